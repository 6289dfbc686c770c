"""``kafkaml up --detach``: ``up`` in the background, returning once the API is healthy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from shared.settings import Settings
from shared.stack.processes import kill_tree, open_log, tail
from shared.stack.runner.common import Echo, display_path, echo_line, health_sync, resolve_home
from shared.stack.runner.services import ENV_PREFIX, with_project_root
from shared.stack.stackfile import StackFile, StackFileError, holder_pid, logs_dir, read_stack, stack_path

_LOG_RECORD = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d")


def up_detached(
    settings: Settings, *, timeout: float = 180.0, echo: Echo = echo_line, kafka_security: str = "none"
) -> int:
    """Start ``up`` in the background and return once the API is healthy.

    On failure or timeout, prints the end of the logs, stops what was started
    and returns 1.
    """
    home = resolve_home(settings)
    holder = holder_pid(home)
    if holder is not None:
        echo(f"error: a Kafka-ML stack is already running for {home} (process {holder}); stop it with `kafkaml down`")
        return 1
    logs = logs_dir(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    logs.mkdir(mode=0o700, exist_ok=True)
    up_log = logs / "up.log"
    env = dict(os.environ)
    env[ENV_PREFIX + "HOME"] = str(home)  # the same home, whatever the child's working folder
    env["PYTHONPATH"] = with_project_root(env.get("PYTHONPATH", ""))
    env["PYTHONUNBUFFERED"] = "1"
    offset = up_log.stat().st_size if up_log.exists() else 0
    with open_log(up_log) as logf:  # owner-only, as everything of the home (docs/security.md)
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up", "--kafka-security", kafka_security],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session: it outlives this command and the terminal.
            start_new_session=True,
        )
    echo(f"starting Kafka-ML in the background (pid {proc.pid}, log {display_path(up_log)})")
    deadline = time.monotonic() + timeout
    while True:
        offset = _echo_progress(up_log, offset, echo)
        code = proc.poll()
        if code is not None:
            _echo_progress(up_log, offset, echo)
            echo(f"error: the stack failed to start (exit code {code}); end of {display_path(up_log)}:")
            echo(tail(up_log, 30))
            return 1
        info = _try_read_stack(home)
        if info is not None and info["pid"] == proc.pid and health_sync(info["api_url"])[0] == 200:
            stack = display_path(stack_path(home))
            echo(f"Kafka-ML is up: {info['api_url']} (token in {stack}); `kafkaml down` stops it")
            return 0
        if time.monotonic() > deadline:
            echo(f"error: the API did not become healthy within {timeout:.0f}s; stopping the stack")
            for name in ("up", "api"):
                path = logs / f"{name}.log"
                if path.exists():
                    echo(f"--- end of {display_path(path)}:")
                    echo(tail(path, 30))
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid, timeout=1)
            return 1
        time.sleep(0.5)


def _echo_progress(path: Path, offset: int, echo: Echo) -> int:
    """Echo the progress lines (not log records) the background ``up`` wrote after ``offset``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except OSError:
        return offset
    complete = chunk[: chunk.rfind(b"\n") + 1]
    for line in complete.decode("utf-8", "replace").splitlines():
        # The final line is printed by the caller, with the hint for `down`.
        if line and not _LOG_RECORD.match(line) and not line.startswith("Kafka-ML is up"):
            echo(line)
    return offset + len(complete)


def _try_read_stack(home: Path) -> StackFile | None:
    try:
        return read_stack(home)
    except StackFileError:
        return None
