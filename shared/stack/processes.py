"""The processes the stack starts: tied to our life, signalled by group, and cleared when left behind.

Each child runs in its own session (hence its own process group), so that stopping it also
stops what it spawned (the validator's sandboxes, the orchestrator's trainers). On Linux a
child also gets ``PR_SET_PDEATHSIG``: if its parent is killed with SIGKILL, the kernel sends
the child SIGTERM instead of leaving an orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Resolved once here, not in the forked child: loading a library between fork
# and exec can deadlock on a lock another thread held at fork time.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _set_pdeathsig() -> None:
    """Runs in the child between fork and exec: die with SIGTERM when the parent dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` tying a child's life to ours, where that is safe.

    The kernel sends the signal when the *thread* that forked the child exits,
    not the process: only a child forked by the main thread may carry it, or a
    worker thread's exit would kill a healthy child.
    """
    if _LIBC is not None and threading.current_thread() is threading.main_thread():
        return _set_pdeathsig
    return None


def is_alive(pid: int) -> bool:
    """True for a live process; a zombie (dead, not yet reaped) counts as gone."""
    try:
        status: str = psutil.Process(pid).status()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group is gone."""
    if pgid <= 1:  # never os.killpg(0 or 1): that is our own group / everything
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (empty when it is gone)."""
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return children


def group_members(pgid: int, *, since: float) -> list[psutil.Process]:
    """The live processes of process group ``pgid``, provided none predates ``since``.

    Used once the group's leader is gone: its id is then only ours while the
    group has members (the kernel does not reuse the id of a live group); a
    group holding a process older than ``since`` (epoch seconds) is someone
    else's, and is left alone.
    """
    members: list[psutil.Process] = []
    for proc in psutil.process_iter(["create_time", "status"]):
        try:
            if os.getpgid(proc.pid) != pgid or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except (OSError, psutil.Error):
            continue
        if proc.info["create_time"] < since - 1.0:  # create_time has coarse resolution
            return []
        members.append(proc)
    return members


def kill_tree(pid: int, *, timeout: float = 10.0) -> None:
    """Stop ``pid``, its process group and its descendants: SIGTERM, wait ``timeout``, SIGKILL.

    Blocking; for processes that are not our children (``kafkaml down`` after
    ``up`` died), so it waits by polling instead of ``waitpid``.
    """
    if pid <= 1:
        raise ValueError(f"refusing to kill pid {pid}")
    try:
        leader = psutil.Process(pid)
        since = leader.create_time()
    except psutil.Error:
        return
    procs: dict[int, psutil.Process] = {}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        # Refreshed each round: descendants that left the group (setsid) are
        # re-parented to init once their parent dies, so they are remembered.
        found = [leader, *descendants(pid), *group_members(pid, since=since)]
        procs.update({p.pid: p for p in found if p.pid not in procs})
        for proc in procs.values():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)  # psutil checks the pid was not recycled
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(is_alive(p) for p in procs):
            time.sleep(0.05)
        if not any(is_alive(p) for p in procs):
            return
    log.error("processes %s survived SIGKILL", [p for p in procs if is_alive(p)])


# --- log files ---------------------------------------------------------------------------------


# A log file larger than this is rotated: copied to ``name.1`` (older copies shift to ``.2``,
# ``.3``) and emptied in place, so the process writing it (O_APPEND) goes on undisturbed.
LOG_MAX_BYTES = 50 * 1024 * 1024
LOG_KEEP = 3


def open_log(path: Path) -> IO[bytes]:
    """Open a log file for appending (creating its folder), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(descriptor, "ab")  # the caller owns (and closes) the handle


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> bool:
    """Rotates ``path`` once it is larger than ``max_bytes``; True when it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    copy = path.with_name(f"{path.name}.1")
    shutil.copyfile(path, copy)
    copy.chmod(0o600)
    with open(path, "r+b") as handle:  # emptied in place: the writer's descriptor stays valid
        handle.truncate(0)
    return True


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 32768))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
