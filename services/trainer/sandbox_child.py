"""The processes of the sandbox: a warm "zygote" per framework, and one forked job per validation.

The zygote is spawned (never forked from the service: its asyncio loop and
Kafka threads do not survive a fork), imports its framework once, and then
only forks. It stays single-threaded and runs no user code, so every fork
starts from the same clean, framework-imported state, in milliseconds instead
of the seconds a TensorFlow import costs.

Each job is two processes (:func:`shared.confine.supervise`): a supervisor
that runs no user code, keeps what the code starts below it and kills it at
the end, and below it the confined process that builds the model and answers
on its own pipe, received from the service through the zygote. Only JSON
crosses any pipe towards the service.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle
from typing import Any, Final

import psutil

from shared.confine import Confinement, exit_like, probe, supervise
from shared.events.catalog import Framework, ModelDefinition
from shared.process import truncate
from shared.usercode import ModelCodeError, base_namespace, validate_definition
from shared.usercode.errors import MAX_MESSAGE
from shared.workerenv import allowed

# A summary of even a huge model is far below this; more means a broken child.
MAX_ANSWER_BYTES: Final = 16 * 2**20
UNREADABLE: Final = "the sandbox returned an unreadable answer"
# How often an idle zygote checks that the service is still there.
_IDLE_CHECK_S: Final = 1.0
_MAX_FD: Final = 65536


def prepare_child_environment() -> None:
    """Runs in the zygote before any framework import: these are read at import time."""
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


def import_framework(framework: Framework) -> None:
    if framework == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    else:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        # Every optimizer's constructor imports it (200 modules, seconds): once, here.
        import torch._dynamo
    # Imports everything the user's namespace holds (numpy, ignite...), so the
    # job's time limit is spent on the user's code only.
    base_namespace(framework)


def send_json(conn: Connection, data: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(data).encode())


# --- the zygote ----------------------------------------------------------------


def zygote_main(conn: Connection, framework: Framework, parent_pid: int) -> None:
    """Spawn target: import the framework, then fork one job per request until the service goes."""
    os.setsid()  # its own group: the service's terminal signals are not its business
    prepare_child_environment()
    # User prints (and model.summary()) have no reader here; stderr stays for crash reports.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        import_framework(framework)
    except BaseException as exc:  # anything here means the zygote is unusable
        send_json(conn, {"status": "failed", "error": truncate(f"{type(exc).__name__}: {exc}", MAX_MESSAGE)})
        os._exit(1)
    send_json(
        conn,
        {"status": "ready", "isolation": probe(), "mapped_mb": psutil.Process().memory_info().vms // 2**20},
    )

    # SIGCHLD wakes the wait below, so an exit is reported at once.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    signal.set_wakeup_fd(wake_w)
    jobs: set[int] = set()

    def stop() -> None:
        # Everything below, not only the jobs' groups: a process of the code may have left its
        # group (setsid) and reset its parent-death signal; it is still below its supervisor.
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    process.kill()
        os._exit(0)

    while True:
        ready = wait([conn, wake_r], timeout=_IDLE_CHECK_S)
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 4096)
        for pid in list(jobs):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                jobs.discard(pid)
                send_json(conn, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})
        if os.getppid() != parent_pid:
            stop()
        if conn not in ready:
            continue
        try:
            request = json.loads(conn.recv_bytes())
            job_fd = recv_handle(conn)
        except (EOFError, OSError):  # the service closed us, or went away
            stop()
        confinement = Confinement.from_json(request["confinement"])
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (wake_r, wake_w, conn.fileno()):
                os.close(fd)
            _job_main(job_fd, confinement)
        os.close(job_fd)
        jobs.add(pid)
        send_json(conn, {"pid": pid})


# --- one job ---------------------------------------------------------------------


def _job_main(job_fd: int, confinement: Confinement) -> None:
    """The job's supervisor: its child does the work; it ends the way that child ended."""
    code = supervise(
        lambda: _run_job(job_fd, confinement),
        pid_namespace=confinement.pid_namespace,
        new_session=True,
        close_fds=(job_fd,),
    )
    exit_like(code)


def _run_job(job_fd: int, confinement: Confinement) -> int:
    """The confined process: receive the definition, build it, answer, exit without clean-up."""
    # Nothing inherited but the job's pipe and stdio: not the resource tracker's pipe, not
    # multiprocessing's sentinels (the frameworks hold no descriptor of their own here).
    os.closerange(3, job_fd)
    os.closerange(job_fd + 1, _MAX_FD)
    conn = Connection(job_fd)
    try:
        # The supervisor made the session; this process stays in its group.
        replace(confinement, new_session=False).apply()
    except OSError as exc:
        send_json(
            conn, {"status": "failed", "error": truncate(f"could not confine the model code: {exc}", MAX_MESSAGE)}
        )
        os._exit(1)
    me = os.getpid()
    try:
        raw = conn.recv_bytes(MAX_ANSWER_BYTES)
    except (EOFError, OSError):
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
    if os.getpid() != me:  # a fork of the user's code came back here: only the original answers
        os._exit(0)
    try:
        send_json(conn, answer)
    except (TypeError, ValueError):
        send_json(conn, {"status": "error", "error": {"message": UNREADABLE, "field": "code", "line": None}})
    conn.close()
    # No interpreter shutdown: user objects' __del__ and framework atexit
    # hooks could hang or crash, and nobody needs them.
    os._exit(0)
