"""Run user model code in a separate process, with a time and a memory limit.

The trainer's validator role: a ``CreateModel`` command carries source code
written by a user; it is built here, in a child process, and answered with a
:class:`ModelSummary` or a precise :class:`ModelCodeError`.

Design notes:

* Children are started with the ``spawn`` method, never ``fork``: TensorFlow,
  PyTorch and a running asyncio loop do not survive a fork.
* Importing TensorFlow costs seconds, so one child per framework is started
  ahead of time and waits, framework imported, for its job. Each child runs
  exactly one job and is killed afterwards: nothing one user's code did (global
  state, monkey-patching, leaked threads) is seen by the next user's code.
* Only JSON crosses the pipe, in both directions. Unpickling something that
  user code could have produced would run that code in *this* process.
* The parent enforces the limits from outside (polling the child's RSS,
  a deadline) because the child is running code that cannot be trusted to
  enforce anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final, Literal

import psutil
from pydantic import BaseModel, ValidationError

from shared.events.catalog import Framework, ModelDefinition, ModelSummary
from shared.process import truncate
from shared.usercode import ModelCodeError, base_namespace, validate_definition
from shared.usercode.errors import MAX_MESSAGE
from shared.workerenv import allowed

__all__ = ["ModelCodeError", "Sandbox", "SandboxError"]

log = logging.getLogger(__name__)

FRAMEWORKS: Final[tuple[Framework, ...]] = ("tensorflow", "pytorch")

# How often the parent looks at the child (answer, liveness, memory). The
# memory limit can be overshot by what the child allocates in this time.
_POLL_S: Final = 0.1
# A summary of even a huge model is far below this; more means a broken child.
_MAX_ANSWER_BYTES: Final = 16 * 2**20
# Time for a killed child to be reaped before we stop waiting for it.
_REAP_S: Final = 5.0
_UNREADABLE: Final = "the sandbox returned an unreadable answer"


class SandboxError(RuntimeError):
    """The sandbox itself failed, not the user's code (e.g. a child could not import its framework)."""


# --- the child process --------------------------------------------------------


def _prepare_child_environment() -> None:
    """Runs in the child before any framework import: these are read at import time."""
    # The allow-list of every process that runs user code, less the worker's Kafka
    # settings: a validation child talks to nobody but its parent.
    for name in list(os.environ):
        if not allowed(name) or name.startswith("KAFKAML_"):
            del os.environ[name]
    os.environ.update(
        {
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # Only silences the oneDNN start-up notice; validation does no heavy math.
            "TF_ENABLE_ONEDNN_OPTS": "0",
            # Validation needs no GPU, and must not take GPU memory from training.
            "CUDA_VISIBLE_DEVICES": "",
            # Few cores: a validation must not starve the training next to it.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
            # Keras 3 could be pointed at another backend by an inherited variable.
            "KERAS_BACKEND": "tensorflow",
        }
    )


def _import_framework(framework: Framework) -> None:
    if framework == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    else:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    # Imports everything the user's namespace holds (numpy, ignite...), so the
    # job's time limit is spent on the user's code only.
    base_namespace(framework)


def _exit_when_orphaned(parent_pid: int) -> None:
    # A child busy in user code does not read its pipe, so it would not notice
    # that the service died; this thread does, and ends it.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _send_json(conn: Connection, data: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(data).encode())


def _child_main(conn: Connection, framework: Framework, parent_pid: int) -> None:
    """Entry point of a sandbox child: import the framework, run one job, exit."""
    # Own process group, so the parent can kill whatever user code starts.
    os.setsid()
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    _prepare_child_environment()
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        # A crashing model must not leave gigabytes of core dump behind.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # User prints (and model.summary()) have no reader here; stderr stays for crash reports.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)

    try:
        _import_framework(framework)
    except BaseException as exc:  # anything here means the child is unusable
        _send_json(conn, {"status": "failed", "error": truncate(f"{type(exc).__name__}: {exc}", MAX_MESSAGE)})
        os._exit(1)
    _send_json(conn, {"status": "ready"})

    try:
        raw = conn.recv_bytes(_MAX_ANSWER_BYTES)
    except (EOFError, OSError):
        # The parent closed us without a job (shutdown) or went away.
        os._exit(0)

    answer: dict[str, Any]
    try:
        definition = ModelDefinition.model_validate_json(raw)
        summary = validate_definition(definition)
        answer = {"status": "ok", "summary": summary.model_dump(mode="json")}
    except ModelCodeError as exc:
        answer = {"status": "error", "error": exc.to_dict()}
    except BaseException as exc:  # the answer must always be sent
        message = truncate(f"the model could not be validated: {type(exc).__name__}: {exc}", MAX_MESSAGE)
        answer = {"status": "error", "error": {"message": message, "field": "code", "line": None}}
    try:
        _send_json(conn, answer)
    except (TypeError, ValueError):
        _send_json(conn, {"status": "error", "error": {"message": _UNREADABLE, "field": "code", "line": None}})
    conn.close()
    # No interpreter shutdown: user objects' __del__ and framework atexit
    # hooks could hang or crash, and nobody needs them.
    os._exit(0)


# --- what the child answers (validated in the parent) --------------------------


class _ChildError(BaseModel):
    message: str
    field: Literal["code", "imports"] = "code"
    line: int | None = None


class _ChildAnswer(BaseModel):
    status: Literal["ok", "error"]
    summary: ModelSummary | None = None
    error: _ChildError | None = None


def _read_answer(raw: bytes) -> ModelSummary:
    try:
        answer = _ChildAnswer.model_validate(json.loads(raw))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelCodeError(_UNREADABLE) from None
    if answer.status == "ok" and answer.summary is not None:
        return answer.summary
    if answer.status == "error" and answer.error is not None:
        error = answer.error
        raise ModelCodeError(truncate(error.message, MAX_MESSAGE), field=error.field, line=error.line)
    raise ModelCodeError(_UNREADABLE)


# --- the parent side -----------------------------------------------------------


@dataclass(eq=False)
class _Child:
    framework: Framework
    process: BaseProcess
    conn: Connection
    pid: int
    ready: bool = False
    released: bool = False


def _spawn(framework: Framework) -> _Child:
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=True)
    process = context.Process(
        target=_child_main,
        args=(child_conn, framework, os.getpid()),
        name=f"kafkaml-sandbox-{framework}",
        # Killed by multiprocessing if the service exits normally, and may not
        # start processes of its own through multiprocessing.
        daemon=True,
    )
    process.start()
    # Our copy of the child's end must go, or the child's death never reads as EOF here.
    child_conn.close()
    assert process.pid is not None  # set by start()
    return _Child(framework=framework, process=process, conn=parent_conn, pid=process.pid)


def _signal_tree(child: _Child) -> None:
    """SIGKILL the child and anything it started. Leaves the pipe and the process object alone."""
    # exitcode reaps an exited child; once reaped its pid may be reused by
    # an unrelated process, which must not be signalled.
    if child.released or child.process.exitcode is not None:
        return
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        descendants = psutil.Process(child.pid).children(recursive=True)
    # The child is its own process group leader (setsid), and it is not
    # reaped yet, so this group id cannot belong to anybody else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    for process in descendants:  # also those that left the group
        with contextlib.suppress(psutil.Error):
            process.kill()
    with contextlib.suppress(ProcessLookupError, ValueError):
        child.process.kill()


def _kill(child: _Child) -> None:
    """Kill the child and its descendants, reap it, release its resources. Blocking; idempotent."""
    if child.released:
        return
    _signal_tree(child)
    child.process.join(_REAP_S)
    child.released = True
    child.conn.close()
    with contextlib.suppress(ValueError):  # still running: nothing more we can do
        child.process.close()


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    with contextlib.suppress(psutil.Error):
        total += process.memory_info().rss
        for descendant in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += descendant.memory_info().rss
    return total


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "with an unknown exit code"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ", probably out of memory" if -exitcode == signal.SIGKILL else ""
        return f"with exit code {exitcode} (killed by {name}{hint})"
    return f"with exit code {exitcode}"


class Sandbox:
    """Keeps one pre-warmed child process per framework (it has already imported
    tensorflow or torch+ignite), so a validation does not pay the multi-second
    framework import. Each child runs exactly ONE job and exits; a fresh one is
    spawned for the next job (isolation between users).

    Validations of one framework run one at a time (a lock per framework):
    the machine has few cores and each job is short.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 60.0,
        memory_mb: int = 4096,
        startup_timeout_s: float = 180.0,
    ) -> None:
        if timeout_s <= 0 or memory_mb <= 0 or startup_timeout_s <= 0:
            raise ValueError("timeout_s, memory_mb and startup_timeout_s must be positive")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        self._warm: dict[Framework, _Child] = {}
        self._running: set[_Child] = set()
        self._locks: dict[Framework, asyncio.Lock] = {fw: asyncio.Lock() for fw in FRAMEWORKS}
        self._closed = False

    async def start(self) -> None:
        """Start a warm child per framework; returns without waiting for their imports."""
        for framework in FRAMEWORKS:
            async with self._locks[framework]:
                await self._replenish(framework)

    async def close(self) -> None:
        """Kill every child, warm or running. A validation in progress raises SandboxError."""
        self._closed = True
        warm = list(self._warm.values())
        self._warm.clear()
        await asyncio.gather(*(asyncio.to_thread(_kill, child) for child in warm))
        # A running child belongs to its validate(), which releases it; a
        # signal is enough to make that validation end now.
        await asyncio.gather(*(asyncio.to_thread(_signal_tree, child) for child in list(self._running)))

    async def validate(self, definition: ModelDefinition) -> ModelSummary:
        """Build the model in a child process; its summary, or ModelCodeError saying what is wrong."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        job = definition.model_dump_json().encode()
        framework = definition.framework
        async with self._locks[framework]:
            child = await self._ready_child(framework)
            try:
                # The next job's child imports its framework while this job runs.
                await self._replenish(framework)
                raw = await self._run_job(child, job)
            finally:
                self._running.discard(child)
                await asyncio.to_thread(_kill, child)
        return _read_answer(raw)

    # -- internals --

    async def _replenish(self, framework: Framework) -> None:
        if self._closed or framework in self._warm:
            return
        # Starting a process writes to pipes and execs: keep it off the loop.
        child = await asyncio.to_thread(_spawn, framework)
        if self._closed:  # closed while it was starting
            await asyncio.to_thread(_kill, child)
        else:
            self._warm[framework] = child

    async def _ready_child(self, framework: Framework) -> _Child:
        """A child that has imported its framework, registered as running."""
        # A warm child may have died while idle (OOM killer...): one retry with a fresh one.
        for attempt in (1, 2):
            warm = self._warm.pop(framework, None)
            child = warm if warm is not None else await asyncio.to_thread(_spawn, framework)
            self._running.add(child)
            try:
                await self._wait_ready(child)
                return child
            except SandboxError:
                self._running.discard(child)
                await asyncio.to_thread(_kill, child)
                if attempt == 2 or self._closed:
                    raise
                log.warning("sandbox child for %s did not start; trying a fresh one", framework)
            except BaseException:  # cancelled: the child must not outlive its validation
                self._running.discard(child)
                await asyncio.to_thread(_kill, child)
                raise
        raise AssertionError("unreachable")

    async def _wait_ready(self, child: _Child) -> None:
        if child.ready:
            return
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if child.conn.poll(0):
                # Only our own code has run in the child so far: a short, whole message.
                try:
                    message = json.loads(child.conn.recv_bytes(_MAX_ANSWER_BYTES))
                except EOFError:
                    await asyncio.to_thread(child.process.join, _REAP_S)
                    raise SandboxError(
                        f"the {child.framework} sandbox process exited while starting "
                        f"{_exit_description(child.process.exitcode)}"
                    ) from None
                except (OSError, ValueError) as exc:
                    raise SandboxError(f"the {child.framework} sandbox process failed to start: {exc!r}") from None
                if isinstance(message, dict) and message.get("status") == "ready":
                    child.ready = True
                    return
                detail = message.get("error") if isinstance(message, dict) else message
                raise SandboxError(f"the {child.framework} sandbox process failed to start: {detail}")
            if not child.process.is_alive():
                raise SandboxError(
                    f"the {child.framework} sandbox process exited while starting "
                    f"{_exit_description(child.process.exitcode)}"
                )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the {child.framework} sandbox process did not start within {self.startup_timeout_s:g} s"
                )
            await asyncio.sleep(_POLL_S)

    async def _run_job(self, child: _Child, job: bytes) -> bytes:
        try:
            child.conn.send_bytes(job)
        except OSError as exc:
            raise SandboxError(f"the sandbox process went away before its job: {exc!r}") from None
        try:
            watched: psutil.Process | None = psutil.Process(child.pid)
        except psutil.Error:  # already gone: the loop below reports how it ended
            watched = None
        limit = self.memory_mb * 2**20
        deadline = time.monotonic() + self.timeout_s
        while True:
            if child.conn.poll(0):
                return await self._receive(child, deadline)
            if not child.process.is_alive():
                # It may have answered just before exiting.
                if child.conn.poll(0):
                    return await self._receive(child, deadline)
                raise self._died(child)
            if watched is not None:
                rss = _tree_rss(watched)
                if rss > limit:
                    await asyncio.to_thread(_signal_tree, child)
                    raise ModelCodeError(
                        f"model code used more than the memory limit of {self.memory_mb} MB "
                        f"(at least {rss // 2**20} MB); it was stopped"
                    )
            if time.monotonic() > deadline:
                await asyncio.to_thread(_signal_tree, child)
                raise self._timed_out()
            await asyncio.sleep(_POLL_S)

    async def _receive(self, child: _Child, deadline: float) -> bytes:
        # recv_bytes blocks until the whole message is there; normally it
        # already is, but the child runs untrusted code, so read in a thread
        # and keep the deadline. Killing the child ends a blocked read (EOF).
        reader = asyncio.ensure_future(asyncio.to_thread(child.conn.recv_bytes, _MAX_ANSWER_BYTES))
        # If we give up on the reader, its late exception is expected: do not log it.
        reader.add_done_callback(lambda f: f.cancelled() or f.exception())
        done, _ = await asyncio.wait({reader}, timeout=max(deadline - time.monotonic(), 1.0))
        if not done:
            await asyncio.to_thread(_signal_tree, child)
            # The pipe is closed only once the reader has stopped using it.
            await asyncio.wait({reader}, timeout=_REAP_S)
            raise self._timed_out()
        try:
            return reader.result()
        except EOFError:
            await asyncio.to_thread(child.process.join, _REAP_S)
            raise self._died(child) from None
        except OSError:  # "bad message length": larger than any real answer
            raise ModelCodeError(_UNREADABLE) from None

    def _timed_out(self) -> ModelCodeError:
        return ModelCodeError(
            f"model code did not finish within {self.timeout_s:g} s (the time limit); "
            "it was stopped (an endless loop, or too much work at build time?)"
        )

    def _died(self, child: _Child) -> Exception:
        if self._closed:
            return SandboxError("the sandbox was closed during the validation")
        return ModelCodeError(
            "the sandbox process running the model code died before answering "
            f"{_exit_description(child.process.exitcode)}"
        )
