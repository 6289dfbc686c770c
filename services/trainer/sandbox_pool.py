"""The service's side of the warm pool: a handle on each zygote and on each job it forked.

Blocking calls, for ``asyncio.to_thread``. Only what the zygote sends (our
own code, before and outside any user code) is read without a size guard; a
job's answer is read by :meth:`Job.receive` with one.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import send_handle
from typing import Any, Final

import psutil

from services.trainer.sandbox_child import MAX_ANSWER_BYTES, zygote_main
from shared.confine import Confinement
from shared.events.catalog import Framework

FRAMEWORKS: Final[tuple[Framework, ...]] = ("tensorflow", "pytorch")

# Time for a killed process to be reaped before we stop waiting for it.
_REAP_S: Final = 5.0
# Time for a job's supervisor to kill what its child left and exit by itself.
_SWEEP_S: Final = 2.0
# A fork of an imported framework takes milliseconds; this means a stuck zygote.
_FORK_S: Final = 30.0


@dataclass(eq=False)
class Zygote:
    framework: Framework
    process: BaseProcess
    conn: Connection
    pid: int
    ready: bool = False
    dead: bool = False
    isolation: dict[str, bool] = field(default_factory=dict)
    mapped_mb: int = 0
    # Exit codes of its jobs as it reports them (negative: killed by that signal).
    exits: dict[int, int] = field(default_factory=dict)

    def _next(self, timeout: float) -> dict[str, Any] | None:
        """The zygote's next message (exit reports are filed, not returned), or None."""
        deadline = time.monotonic() + timeout
        while not self.dead:
            try:
                if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                    return None
                message = json.loads(self.conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                self.dead = True
                return None
            if isinstance(message, dict) and "exited" in message:
                self.exits[int(message["exited"])] = int(message["code"])
                continue
            return message if isinstance(message, dict) else {}
        return None

    def check_ready(self) -> str | None:
        """Reads its start-up answer if there is one; a sentence if it failed to start."""
        message = self._next(0)
        if message is not None:
            if message.get("status") == "ready":
                self.ready = True
                self.isolation = {str(k): bool(v) for k, v in dict(message.get("isolation", {})).items()}
                self.mapped_mb = int(message.get("mapped_mb", 0))
                return None
            return f"failed to start: {message.get('error', message)}"
        if self.dead or not self.process.is_alive():
            self.process.join(_REAP_S)
            return f"exited while starting (exit code {self.process.exitcode})"
        return None

    def fork(self, confinement: Confinement) -> Job:
        """A new job process, with its own pipe; raises OSError if the zygote cannot make one."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        try:
            self.conn.send_bytes(json.dumps({"confinement": confinement.to_json()}).encode())
            send_handle(self.conn, theirs.fileno(), self.pid)
        finally:
            # Our copy of the job's end must go, or the job's death never reads as EOF here.
            theirs.close()
        message = self._next(_FORK_S)
        if message is None or not isinstance(message.get("pid"), int):
            ours.close()
            self.dead = True
            raise OSError(f"no answer from the zygote ({message!r})")
        return Job(zygote=self, pid=message["pid"], conn=ours)

    def kill(self) -> None:
        """Kill it (its jobs die with it: they have a parent-death signal). Blocking; idempotent."""
        self.dead = True
        with contextlib.suppress(ProcessLookupError, ValueError):
            self.process.kill()
        with contextlib.suppress(ValueError):
            self.process.join(_REAP_S)
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()


@dataclass(eq=False)
class Job:
    zygote: Zygote
    pid: int  # the job's supervisor, the leader of its process group
    conn: Connection
    ended: bool = False

    @property
    def exitcode(self) -> int | None:
        return self.zygote.exits.get(self.pid)

    def _exited(self) -> bool:
        return self.pid in self.zygote.exits or self.zygote.dead

    def alive(self) -> bool:
        self.zygote._next(0)
        return not self._exited()

    def receive(self) -> bytes:
        return self.conn.recv_bytes(MAX_ANSWER_BYTES)

    def usage(self, limit: int) -> tuple[int, int]:
        """(processes running the code, their private memory in bytes, exact only above ``limit``)."""
        try:
            supervisor = psutil.Process(self.pid)
            below = supervisor.children(recursive=True)
        except psutil.Error:
            return 0, 0
        processes = (supervisor, *below)
        resident = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                resident += process.memory_info().rss
        if resident <= limit:  # private memory is part of the resident: cheap, and enough
            return len(below), resident
        private = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                # USS: what the zygote's pages, shared copy-on-write, do not already hold
                # (costs ~10 ms a process: the kernel walks its page tables).
                private += process.memory_full_info().uss
        return len(below), private

    def signal(self) -> None:
        """SIGKILL everything running the code; its supervisor then exits by itself."""
        if self._exited():  # its pid may belong to somebody else now
            return
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    process.kill()

    def wait_exit(self, timeout: float = _REAP_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._exited() and time.monotonic() < deadline:
            self.zygote._next(min(0.1, max(0.0, deadline - time.monotonic())))

    def end(self) -> None:
        """Kill what is left of the job and wait for its report. Blocking; idempotent."""
        if self.ended:
            return
        self.ended = True
        self.signal()
        self.wait_exit(_SWEEP_S)
        if not self._exited():
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            self.wait_exit(_REAP_S)
        self.conn.close()


def spawn_zygote(framework: Framework) -> Zygote:
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=True)
    process = context.Process(
        target=zygote_main,
        args=(child_conn, framework, os.getpid()),
        name=f"kafkaml-sandbox-{framework}",
        # Killed by multiprocessing if the service exits normally.
        daemon=True,
    )
    process.start()
    child_conn.close()
    assert process.pid is not None  # set by start()
    return Zygote(framework=framework, process=process, conn=parent_conn, pid=process.pid)
