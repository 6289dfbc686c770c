"""Run user model code in a confined process, with a time, a memory and a process limit.

The trainer's validator role: a ``CreateModel`` command carries source code
written by a user; it is built here, in a child process, and answered with a
:class:`ModelSummary` or a precise :class:`ModelCodeError`.

Design notes:

* A warm pool: one "zygote" per framework is spawned ahead of time, imports
  TensorFlow or PyTorch once and then forks a fresh process per job
  (``sandbox_child``), so a validation costs the model's build, not the
  framework's seconds-long import. A process that ran user code is never
  reused: nothing one user's code did (global state, monkey-patching, files
  in its folder, leaked threads) is seen by the next user's code.
* Each job is confined by :mod:`shared.confine`: its own session, rlimits, a
  private working directory removed afterwards, no network, a read-only import
  path, an optional unprivileged uid; a supervisor process (and a PID namespace
  where the kernel allows) keeps everything it starts together, and all of it
  is killed when the validation ends.
* Only JSON crosses the pipes towards this process. Unpickling something that
  user code could have produced would run that code in *this* process.
* The parent also enforces limits from outside (private memory of the job's
  processes, their number, a deadline) because the job runs code that cannot
  be trusted to enforce anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Final, Literal

from pydantic import BaseModel, ValidationError

from services.trainer.sandbox_child import UNREADABLE as _UNREADABLE
from services.trainer.sandbox_child import prepare_child_environment as _prepare_child_environment
from services.trainer.sandbox_pool import FRAMEWORKS, Job, Zygote, spawn_zygote
from shared.confine import Confinement, Limits, make_work_dir, remove_work_dir
from shared.events.catalog import Framework, ModelDefinition, ModelSummary
from shared.process import truncate
from shared.usercode import ModelCodeError
from shared.usercode.errors import MAX_MESSAGE

__all__ = ["ModelCodeError", "Sandbox", "SandboxError", "_prepare_child_environment"]

log = logging.getLogger(__name__)

# How often the parent looks at the job (answer, liveness, memory). The
# memory limit can be overshot by what the job allocates in this time.
_POLL_S: Final = 0.05


class SandboxError(RuntimeError):
    """The sandbox itself failed, not the user's code (e.g. a child could not import its framework)."""


# --- what the child answers (validated in the parent) --------------------------


class _ChildError(BaseModel):
    message: str
    field: Literal["code", "imports"] = "code"
    line: int | None = None


class _ChildAnswer(BaseModel):
    status: Literal["ok", "error", "failed"]
    summary: ModelSummary | None = None
    error: _ChildError | str | None = None


def _read_answer(raw: bytes) -> ModelSummary:
    try:
        answer = _ChildAnswer.model_validate(json.loads(raw))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelCodeError(_UNREADABLE) from None
    if answer.status == "ok" and answer.summary is not None:
        return answer.summary
    if answer.status == "error" and isinstance(answer.error, _ChildError):
        error = answer.error
        raise ModelCodeError(truncate(error.message, MAX_MESSAGE), field=error.field, line=error.line)
    if answer.status == "failed" and isinstance(answer.error, str):
        raise SandboxError(truncate(answer.error, MAX_MESSAGE))
    raise ModelCodeError(_UNREADABLE)


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "with an unknown exit code"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hints = {int(signal.SIGKILL): ", probably out of memory", int(signal.SIGXCPU): ", the CPU time limit"}
        return f"with exit code {exitcode} (killed by {name}{hints.get(-exitcode, '')})"
    return f"with exit code {exitcode}"


class Sandbox:
    """Keeps one warm zygote per framework (it has already imported tensorflow or
    torch+ignite) and forks a fresh, confined process from it for each job.

    Validations of one framework run one at a time (a lock per framework):
    the machine has few cores and each job is short.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 60.0,
        memory_mb: int = 4096,
        startup_timeout_s: float = 180.0,
        confinement: Confinement | None = None,
        work_root: str | None = None,
    ) -> None:
        if timeout_s <= 0 or memory_mb <= 0 or startup_timeout_s <= 0:
            raise ValueError("timeout_s, memory_mb and startup_timeout_s must be positive")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        # No network while a model is built: it needs none, and must not reach the broker.
        self.confinement = confinement or Confinement(network=False, limits=Limits(cpu_s=int(2 * timeout_s) + 1))
        self.work_root = work_root
        self._zygotes: dict[Framework, Zygote] = {}
        self._running: set[Job] = set()
        self._locks: dict[Framework, asyncio.Lock] = {fw: asyncio.Lock() for fw in FRAMEWORKS}
        self._closed = False
        self._warned_root = False
        self._warming: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start a zygote per framework; returns without waiting for their imports (a task
        waits for them, so that the log says at start what isolation this machine gives)."""
        for framework in FRAMEWORKS:
            async with self._locks[framework]:
                await self._ensure_zygote(framework)
        self._warming = asyncio.ensure_future(self._warm_in_background())

    async def _warm_in_background(self) -> None:
        try:
            await self.warm()
        except SandboxError as error:  # the next validation tries again, and answers with it
            log.error("sandbox did not start: %s", error)

    async def warm(self, frameworks: Iterable[Framework] = FRAMEWORKS) -> None:
        """Start zygotes if need be and wait until they have imported their frameworks."""
        for framework in frameworks:
            async with self._locks[framework]:
                await self._ready_zygote(framework)

    async def close(self) -> None:
        """Kill every process, warm or running. A validation in progress raises SandboxError."""
        self._closed = True
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError, SandboxError):
                await self._warming
        # A running job belongs to its validate(), which releases it; a signal
        # is enough to make that validation end now.
        await asyncio.gather(*(asyncio.to_thread(job.signal) for job in list(self._running)))
        zygotes = list(self._zygotes.values())
        self._zygotes.clear()
        await asyncio.gather(*(asyncio.to_thread(zygote.kill) for zygote in zygotes))

    async def validate(self, definition: ModelDefinition) -> ModelSummary:
        """Build the model in a child process; its summary, or ModelCodeError saying what is wrong."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        payload = definition.model_dump_json().encode()
        framework = definition.framework
        async with self._locks[framework]:
            zygote = await self._ready_zygote(framework)
            run_as = self.confinement.run_as
            work_dir = await asyncio.to_thread(make_work_dir, self.work_root, run_as, "kafkaml-validation-")
            job: Job | None = None
            try:
                confinement = replace(self.confinement, work_dir=work_dir)
                try:
                    job = await asyncio.to_thread(zygote.fork, confinement)
                except OSError as exc:
                    await asyncio.to_thread(zygote.kill)
                    self._zygotes.pop(framework, None)
                    raise SandboxError(f"the {framework} sandbox could not start a job: {exc}") from None
                self._running.add(job)
                raw = await self._run_job(job, payload)
            finally:
                if job is not None:
                    self._running.discard(job)
                    await asyncio.to_thread(job.end)
                await asyncio.to_thread(remove_work_dir, work_dir)
        return _read_answer(raw)

    # -- internals --

    async def _ensure_zygote(self, framework: Framework) -> Zygote:
        zygote = self._zygotes.get(framework)
        if zygote is None or zygote.dead:
            if zygote is not None:
                await asyncio.to_thread(zygote.kill)
            # Starting a process writes to pipes and execs: keep it off the loop.
            zygote = await asyncio.to_thread(spawn_zygote, framework)
            if self._closed:  # closed while it was starting
                await asyncio.to_thread(zygote.kill)
                raise SandboxError("the sandbox is closed")
            self._zygotes[framework] = zygote
        return zygote

    async def _ready_zygote(self, framework: Framework) -> Zygote:
        """A zygote that has imported its framework."""
        # One may have died while idle (OOM killer...): one retry with a fresh one.
        for attempt in (1, 2):
            zygote = await self._ensure_zygote(framework)
            try:
                await self._wait_ready(zygote)
                return zygote
            except SandboxError:
                await asyncio.to_thread(zygote.kill)
                self._zygotes.pop(framework, None)
                if attempt == 2 or self._closed:
                    raise
                log.warning("sandbox zygote for %s did not start; trying a fresh one", framework)
        raise AssertionError("unreachable")

    async def _wait_ready(self, zygote: Zygote) -> None:
        if zygote.ready:
            return
        deadline = time.monotonic() + self.startup_timeout_s
        while not zygote.ready:
            problem = zygote.check_ready()
            if problem is not None:
                raise SandboxError(f"the {zygote.framework} sandbox process {problem}")
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the {zygote.framework} sandbox process did not start within {self.startup_timeout_s:g} s"
                )
            if not zygote.ready:
                await asyncio.sleep(_POLL_S)
        self._log_isolation(zygote)

    def _log_isolation(self, zygote: Zygote) -> None:
        can = zygote.isolation
        missing = [f"no {name} namespace" for name in ("network", "pid", "mount") if not can.get(name)]
        limit = self.confinement.limits.address_space_mb
        log.info(
            "sandbox for %s ready: %s; the framework maps %d MB of the %s address-space limit",
            zygote.framework,
            "all namespaces" if not missing else ", ".join(missing),
            zygote.mapped_mb,
            f"{limit} MB" if limit else "unlimited",
        )
        if missing:
            log.warning(
                "sandbox for %s runs with fallbacks (%s): network access is %s, the import path is "
                "only as read-only as its owner makes it, and escaped processes are found by the "
                "supervisor (a subreaper) instead of the kernel; see docs/security.md",
                zygote.framework,
                ", ".join(missing),
                "cut off" if can.get("network") else "NOT cut off",
            )
        if self.confinement.run_as is None and os.getuid() == 0 and not self._warned_root:
            self._warned_root = True
            log.warning("sandbox runs model code as root: set a uid for it (see docs/security.md)")

    async def _run_job(self, job: Job, payload: bytes) -> bytes:
        try:
            job.conn.send_bytes(payload)
        except OSError as exc:
            raise SandboxError(f"the sandbox process went away before its job: {exc!r}") from None
        limit = self.memory_mb * 2**20
        processes = self.confinement.limits.processes
        deadline = time.monotonic() + self.timeout_s
        while True:
            if job.conn.poll(0):
                return await self._receive(job, deadline)
            if not job.alive():
                # It may have answered just before exiting.
                if job.conn.poll(0):
                    return await self._receive(job, deadline)
                raise self._died(job)
            count, private = await asyncio.to_thread(job.usage, limit)
            if processes is not None and count > processes:
                await asyncio.to_thread(job.signal)
                raise ModelCodeError(
                    f"model code started more than the limit of {processes} processes ({count}); it was stopped"
                )
            if private > limit:
                await asyncio.to_thread(job.signal)
                raise ModelCodeError(
                    f"model code used more than the memory limit of {self.memory_mb} MB "
                    f"(at least {private // 2**20} MB); it was stopped"
                )
            if time.monotonic() > deadline:
                await asyncio.to_thread(job.signal)
                raise self._timed_out()
            await asyncio.sleep(_POLL_S)

    async def _receive(self, job: Job, deadline: float) -> bytes:
        # recv_bytes blocks until the whole message is there; normally it
        # already is, but the job runs untrusted code, so read in a thread
        # and keep the deadline. Killing the job ends a blocked read (EOF).
        reader = asyncio.ensure_future(asyncio.to_thread(job.receive))
        # If we give up on the reader, its late exception is expected: do not log it.
        reader.add_done_callback(lambda f: f.cancelled() or f.exception())
        done, _ = await asyncio.wait({reader}, timeout=max(deadline - time.monotonic(), 1.0))
        if not done:
            await asyncio.to_thread(job.signal)
            # The pipe is closed only once the reader has stopped using it.
            await asyncio.wait({reader}, timeout=5.0)
            raise self._timed_out()
        try:
            return reader.result()
        except EOFError:
            await asyncio.to_thread(job.wait_exit)
            raise self._died(job) from None
        except OSError:  # "bad message length": larger than any real answer
            raise ModelCodeError(_UNREADABLE) from None

    def _timed_out(self) -> ModelCodeError:
        return ModelCodeError(
            f"model code did not finish within {self.timeout_s:g} s (the time limit); "
            "it was stopped (an endless loop, or too much work at build time?)"
        )

    def _died(self, job: Job) -> Exception:
        if self._closed:
            return SandboxError("the sandbox was closed during the validation")
        with contextlib.suppress(Exception):
            job.wait_exit()
        return ModelCodeError(
            f"the sandbox process running the model code died before answering {_exit_description(job.exitcode)}"
        )
