"""Supervised child processes: restart on crash with back-off, stop them all on shutdown.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only ``up``, which
then stops the children in order instead of everything dying at once; how a child's group
is signalled and cleared is ``shared.stack.processes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

# Re-exported: restarts use the one back-off of shared.process.
from shared.process import Backoff as Backoff
from shared.process import every
from shared.stack.processes import descendants, group_members, open_log, parent_death_hook, rotate_log, signal_group

log = logging.getLogger(__name__)


# A crashed service restarts after 1 s, then 2, 4, ... up to 30 s; one that stayed up a
# minute is healthy again and starts from 1 s.
RESTART_BACKOFF = Backoff(initial=1.0)
# How often the children's log files are checked for rotation (shared.stack.processes.rotate_log).
LOG_CHECK_EVERY_S = 30.0


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process."""

    name: str
    argv: Sequence[str]
    log_path: Path
    # None: inherit ours. The runner passes a complete environment on purpose:
    # which secrets a child sees is decided there, not inherited by accident.
    env: Mapping[str, str] | None = None
    cwd: Path | None = None


@dataclass
class _Child:
    spec: ChildSpec
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0  # monotonic, for the uptime
    started_wall: float = 0.0  # epoch, to recognise what the child spawned
    starts: int = 0
    task: asyncio.Task[None] | None = None
    last_exit: int | None = None
    delays: list[float] = field(default_factory=list)


class Supervisor:
    """Keeps a set of child processes running until :meth:`stop`.

    ``on_change`` is called with the current ``{name: pid or None}`` each time a
    child starts or exits (the runner rewrites ``stack.json`` with it).
    """

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        stop_timeout: float = 10.0,
        on_change: Callable[[dict[str, int | None]], None] | None = None,
    ) -> None:
        self.backoff = backoff or RESTART_BACKOFF
        self.stop_timeout = stop_timeout
        self.on_change = on_change
        self._children: dict[str, _Child] = {}
        self._stopping = asyncio.Event()
        # Held while a restart spawns: stop() takes it, so no child is being
        # born, unseen, while it stops the others.
        self._spawning = asyncio.Lock()
        self._rotation: asyncio.Task[None] | None = None

    # --- queries ---

    def pids(self) -> dict[str, int | None]:
        return {name: _pid_of(child) for name, child in self._children.items()}

    def starts(self) -> dict[str, int]:
        """How many times each child was started (1 + its restarts)."""
        return {name: child.starts for name, child in self._children.items()}

    def restart_delays(self, name: str) -> list[float]:
        """The back-off delays used so far before each restart of ``name``."""
        return list(self._children[name].delays)

    # --- life cycle ---

    async def start(self, spec: ChildSpec) -> int:
        """Start ``spec`` and supervise it; returns its pid.

        A child that cannot even be spawned (bad executable) raises here, so a
        configuration error fails ``up`` instead of looping on restarts.
        """
        if spec.name in self._children:
            raise ValueError(f"a child named {spec.name!r} is already supervised")
        child = _Child(spec)
        async with self._spawning:
            if self._stopping.is_set():
                raise RuntimeError("the supervisor is stopping")
            await self._spawn(child)
            self._children[spec.name] = child
        child.task = asyncio.create_task(self._watch(child), name=f"supervise-{spec.name}")
        if self._rotation is None:
            rotating = every(LOG_CHECK_EVERY_S, self._rotate_logs, what="log rotation")
            self._rotation = asyncio.create_task(rotating, name="rotate-logs")
        self._notify()
        assert child.proc is not None
        return child.proc.pid

    async def stop(self) -> None:
        """Stop every child: SIGTERM to each group, wait ``stop_timeout``, then SIGKILL."""
        self._stopping.set()
        if self._rotation is not None:
            self._rotation.cancel()
        async with self._spawning:
            await self._stop_children()

    async def _stop_children(self) -> None:
        running = [c for c in self._children.values() if c.proc is not None and c.proc.returncode is None]
        trees = {c.spec.name: descendants(c.proc.pid) for c in running if c.proc is not None}
        for child in running:
            assert child.proc is not None
            log.info("stopping %s (pid %d)", child.spec.name, child.proc.pid)
            signal_group(child.proc.pid, signal.SIGTERM)
        if running:
            waits = [asyncio.ensure_future(c.proc.wait()) for c in running if c.proc is not None]
            _, pending = await asyncio.wait(waits, timeout=self.stop_timeout)
            for fut in pending:
                fut.cancel()
        for child in running:
            assert child.proc is not None
            if child.proc.returncode is None:
                log.warning(
                    "%s (pid %d) did not stop within %.0fs; killing it",
                    child.spec.name,
                    child.proc.pid,
                    self.stop_timeout,
                )
                signal_group(child.proc.pid, signal.SIGKILL)
                await child.proc.wait()
        for child in self._children.values():
            if child.proc is not None:
                # What the child spawned and did not stop with it.
                _kill_leftovers(child, trees.get(child.spec.name, []))
        tasks = [c.task for c in self._children.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._notify()

    async def _rotate_logs(self) -> None:
        for child in list(self._children.values()):
            if rotate_log(child.spec.log_path):
                log.info("rotated %s", child.spec.log_path)

    def kill_now(self) -> None:
        """SIGKILL every child group at once (a second Ctrl-C)."""
        self._stopping.set()
        for child in self._children.values():
            if child.proc is not None and child.proc.returncode is None:
                signal_group(child.proc.pid, signal.SIGKILL)

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- internals ---

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        child.starts += 1
        # Opening a local file is quick enough to do on the loop.
        with open_log(spec.log_path) as logf:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            logf.write(f"===== {stamp} start #{child.starts} of {spec.name}: {' '.join(spec.argv)}\n".encode())
            logf.flush()
            # The child gets its own descriptor of the log; ours closes with the `with`.
            child.proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(spec.env) if spec.env is not None else None,
                cwd=spec.cwd,
                start_new_session=True,
                preexec_fn=parent_death_hook(),
            )
        child.started_at = time.monotonic()
        child.started_wall = time.time()
        log.info("started %s (pid %d), log %s", spec.name, child.proc.pid, spec.log_path)

    async def _watch(self, child: _Child) -> None:
        delay = self.backoff.initial
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            uptime = time.monotonic() - child.started_at
            child.last_exit = code
            if self._stopping.is_set():
                return
            # The child is gone but what it spawned may not be: clear its group
            # so restarts do not pile up orphaned sandboxes.
            _kill_leftovers(child, [])
            if uptime >= self.backoff.reset_after:
                delay = self.backoff.initial
            log.warning(
                "%s (pid %d) exited with code %s after %.1fs; restarting in %.1fs (see %s)",
                child.spec.name,
                child.proc.pid,
                code,
                uptime,
                delay,
                child.spec.log_path,
            )
            self._notify()
            child.delays.append(delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                return  # asked to stop during the back-off
            delay = self.backoff.following(delay)
            while True:
                try:
                    async with self._spawning:
                        if self._stopping.is_set():
                            return
                        await self._spawn(child)
                    break
                except OSError as exc:
                    log.error("cannot start %s: %s; retrying in %.1fs", child.spec.name, exc, delay)
                    child.delays.append(delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                        return
                    delay = self.backoff.following(delay)
            self._notify()

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(self.pids())
        except Exception:  # a bookkeeping failure must not stop supervision
            log.exception("on_change callback failed")


def _pid_of(child: _Child) -> int | None:
    if child.proc is None or child.proc.returncode is not None:
        return None
    return child.proc.pid


def _kill_leftovers(child: _Child, tree: list[psutil.Process]) -> None:
    """SIGKILL what an exited (and reaped) child left: its group's members and ``tree``.

    Not ``killpg``: the child was reaped, so its pid, and the group id, may be reused.
    """
    assert child.proc is not None
    leftovers = [*group_members(child.proc.pid, since=child.started_wall), *tree]
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            if proc.is_running():  # also checks the pid was not recycled
                log.info("killing pid %d left behind by %s", proc.pid, child.spec.name)
                proc.kill()
