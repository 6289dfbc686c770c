"""The state files of a local stack's home: ``stack.json`` and the ``up`` lock.

``stack.json``'s five keys ``api_url``, ``bootstrap_servers``, ``database_url``,
``token`` and ``bus_key`` are a public contract with clients, documented in docs/contracts.md,
and so is ``kafka_security`` (how to reach the brokers). The other keys are for
``kafkaml down`` and ``kafkaml status``. It holds the API token, the bus key, the owner's
database URL and the Kafka password, so it is readable by its owner only.

The lock (``up.lock``) is an ``flock`` held by the running ``up`` process for
its whole life: the kernel drops it when that process dies, however it dies, so
a stale ``stack.json`` never makes a new ``up`` refuse to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

STACK_FILE = "stack.json"
LOCK_FILE = "up.lock"
LOGS_DIR = "logs"


class StackFile(TypedDict):
    """What ``up`` writes; the first five keys are the public contract."""

    api_url: str
    bootstrap_servers: str
    database_url: str
    token: str
    # The key commands are signed with (docs/contracts.md, Signing); the first of KAFKAML_BUS_KEY.
    bus_key: str
    # --- for `down` and `status` ---
    pid: int
    home: str
    api_database_url: str
    started_at: float
    broker_pid: int | None
    postgres_pid: int | None
    pgdata: str | None
    services: dict[str, int | None]
    # The `python -m MODULE` of each service, so `down` can check that a pid it
    # is about to kill is still that service and not a recycled pid.
    modules: dict[str, str]
    # How clients reach the stack's broker (``shared.kafka_security.KafkaSecurity`` fields, the
    # password included: the file is 0600); absent or PLAINTEXT for a broker without security.
    kafka_security: NotRequired[dict[str, Any]]


class StackFileError(RuntimeError):
    """``stack.json`` exists but cannot be read."""


def stack_path(home: Path) -> Path:
    return home / STACK_FILE


def logs_dir(home: Path) -> Path:
    return home / LOGS_DIR


def write_stack(home: Path, data: StackFile) -> Path:
    """Write ``stack.json`` atomically with mode 0600 (it holds the token and the bus key)."""
    home.mkdir(parents=True, exist_ok=True)
    target = stack_path(home)
    # mkstemp creates the file 0600 from the start, so the token is never
    # readable by others, not even for an instant; the rename makes readers
    # see either the old or the new file, never half of one.
    fd, tmp = tempfile.mkstemp(prefix=".stack.", suffix=".json", dir=home)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def read_stack(home: Path) -> StackFile | None:
    """The stack file of ``home``, or None when there is none."""
    path = stack_path(home)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StackFileError(f"{path} is not valid JSON ({exc}); remove it and run `kafkaml up`") from exc
    if not isinstance(data, dict) or not all(k in data for k in ("api_url", "bootstrap_servers", "token")):
        raise StackFileError(f"{path} lacks the keys `up` writes; remove it and run `kafkaml up`")
    # Files written by an older version may lack the bookkeeping keys.
    data.setdefault("pid", 0)
    data.setdefault("services", {})
    data.setdefault("modules", {})
    for key in ("broker_pid", "postgres_pid", "pgdata"):
        data.setdefault(key, None)
    return cast(StackFile, data)


def remove_stack(home: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        stack_path(home).unlink()


class StackLockedError(RuntimeError):
    """Another ``up`` holds the lock of this home."""

    def __init__(self, home: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"a Kafka-ML stack is already running for {home} ({who}); "
            "stop it with `kafkaml down` or use another KAFKAML_HOME"
        )
        self.home = home
        self.pid = pid


class UpLock:
    """The exclusive lock one ``up`` process holds on its home while it runs."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StackLockedError`; records our pid in the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StackLockedError(self.path.parent, holder_pid(self.path.parent)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Truncate before unlocking so nobody reads our pid as a live holder.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> UpLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_pid(home: Path) -> int | None:
    """The pid of the ``up`` process running for ``home``, or None when none runs.

    The lock is probed, not just the file read: a pid in a file whose lock is
    free belongs to a dead ``up`` (and may have been recycled since).
    """
    path = home / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(path: Path) -> int:
    # The holder writes its pid right after locking: an empty file is an `up`
    # between those two steps, so give it a moment.
    deadline = time.monotonic() + 2.0
    while True:
        content = path.read_text(encoding="utf-8").strip()
        if content.isdigit() and int(content) > 1:
            return int(content)
        if time.monotonic() > deadline:
            raise StackFileError(f"{path} is locked but names no process; is an `up` starting?")
        time.sleep(0.05)
