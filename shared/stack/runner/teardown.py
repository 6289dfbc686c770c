"""``kafkaml down``: ask ``up`` to stop, then clear whatever an ``up`` that died left running."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil

from shared.settings import Settings
from shared.stack.postgres import stop_postgres
from shared.stack.processes import group_members, is_alive, kill_tree
from shared.stack.runner.common import Echo, cmdline_has, display_path, echo_line, resolve_home
from shared.stack.stackfile import StackFile, StackFileError, holder_pid, read_stack, remove_stack


def down(settings: Settings, *, timeout: float = 90.0, echo: Echo = echo_line) -> int:
    """Stop the stack of this home: ask ``up`` to stop, then clear whatever is left."""
    home = resolve_home(settings)
    try:
        info = read_stack(home)
    except StackFileError as exc:
        echo(f"warning: {exc}")
        info = None
    holder = holder_pid(home)
    if holder is None and info is None:
        leftovers = _stop_leftovers(home, None)
        if leftovers:
            echo(f"stopped leftovers of an earlier stack: {', '.join(leftovers)}")
        else:
            echo(f"Kafka-ML is not running for {display_path(home)}")
        return 0
    if holder is not None:
        echo(f"stopping Kafka-ML (pid {holder})...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (is_alive(holder) or holder_pid(home) is not None):
            time.sleep(0.2)
        if is_alive(holder):
            echo(f"the up process did not stop within {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
    else:
        echo("the up process is gone; stopping what it left running")
    # Idempotent: after a clean stop it finds nothing.
    leftovers = _stop_leftovers(home, info)
    if leftovers:
        echo(f"stopped leftovers: {', '.join(leftovers)}")
    remove_stack(home)
    echo("Kafka-ML stopped")
    return 0


def _stop_leftovers(home: Path, info: StackFile | None) -> list[str]:
    stopped: list[str] = []
    if info is not None:
        for name, pid in info["services"].items():
            module = info["modules"].get(name, "")
            if not pid or pid <= 1:
                continue
            if cmdline_has(pid, f"-m {module}" if module else "-m "):
                kill_tree(pid, timeout=10)
                stopped.append(name)
            # A service that died without stopping its children (killed along
            # with `up`) leaves them in its process group.
            orphans = group_members(pid, since=info["started_at"])
            if orphans:
                for proc in orphans:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
                stopped.append(f"{len(orphans)} process(es) started by {name}")
        broker_pid = info["broker_pid"]
        if broker_pid and broker_pid > 1 and cmdline_has(broker_pid, "--listener-url"):
            kill_tree(broker_pid, timeout=10)
            stopped.append("broker")
    pgdata = Path(info["pgdata"]) if info is not None and info["pgdata"] else home / "pgdata"
    if pgdata.exists() and stop_postgres(pgdata):
        stopped.append("postgres")
    return stopped
