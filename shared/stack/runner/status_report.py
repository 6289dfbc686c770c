"""``kafkaml status``: each part of the stack, running or not, and the API's health."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from shared.settings import Settings
from shared.stack.postgres import postgres_pid
from shared.stack.runner.common import (
    HEALTH_PATH,
    Echo,
    cmdline_has,
    display_path,
    echo_line,
    health_sync,
    redact_url,
    resolve_home,
)
from shared.stack.stackfile import StackFileError, holder_pid, read_stack, stack_path


def status(settings: Settings, *, echo: Echo = echo_line) -> int:
    """Print each part's state; 0 when all run and the API is healthy, else 3."""
    home = resolve_home(settings)
    try:
        info = read_stack(home)
    except StackFileError as exc:
        echo(f"error: {exc}")
        return 3
    holder = holder_pid(home)
    if info is None:
        if holder is not None:
            echo(f"{'up':<14}starting  pid {holder} (no stack.json yet)")
        else:
            echo(f"Kafka-ML is not running (no {display_path(stack_path(home))})")
        return 3
    rows: list[tuple[str, bool, str, str, str]] = []  # name, ok, state, pid, detail

    def process_row(name: str, alive: bool, pid: int | None, detail: str = "") -> None:
        rows.append((name, alive, "running" if alive else "DOWN", f"pid {pid}" if pid else "-", detail))

    process_row("up", holder == info["pid"], info["pid"], str(home))
    if info["broker_pid"] is None:
        reachable = _reachable(info["bootstrap_servers"])
        state = "external" if reachable else "unreachable"
        rows.append(("broker", reachable, state, "-", info["bootstrap_servers"]))
    else:
        alive = cmdline_has(info["broker_pid"], "--listener-url")
        process_row("broker", alive, info["broker_pid"], info["bootstrap_servers"])
    if info["pgdata"] is None:
        # Not probed here: the health answer below says whether the API reaches it.
        rows.append(("postgres", True, "external", "-", redact_url(info["database_url"])))
    else:
        pid = postgres_pid(Path(info["pgdata"]))
        process_row("postgres", pid is not None, pid or info["postgres_pid"], info["pgdata"])
    for name, spid in info["services"].items():
        module = info["modules"].get(name, "")
        process_row(name, spid is not None and cmdline_has(spid, module or "-m"), spid)
    code, body = health_sync(info["api_url"])
    state = "ok" if code == 200 else (f"HTTP {code}" if code else "unreachable")
    detail = f"{info['api_url']}{HEALTH_PATH} {body.strip() if code is not None else ''}"
    rows.append(("health", code == 200, state, "-", detail))
    for name, _, state, pid_text, detail in rows:
        echo(f"{name:<14}{state:<12}{pid_text:<12}{detail}".rstrip())
    return 0 if all(ok for _, ok, _, _, _ in rows) else 3


def _reachable(bootstrap_servers: str) -> bool:
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        with (
            contextlib.suppress(OSError, ValueError),
            socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=2),
        ):
            return True
    return False
