"""The local launcher: trainers and inferencers as supervised processes of the orchestrator.

Each process gets the workers' environment (``shared.workerenv``: the Kafka
settings, no database URL, no API token), runs as the stack's sandbox user when it has one
(``KAFKAML_SANDBOX_UID``), runs in its own process group (stopping it stops what it
spawned), has a memory limit enforced by watching its process tree, and
carries PR_SET_PDEATHSIG so that none outlives the orchestrator. Its job spec
goes to it on standard input (a pipe only it reads), never on a topic: the spec
carries the job's secrets.

Every worker runs confined (``shared.confine``): under a supervisor that runs no user code
and kills whatever the code left behind, in a PID namespace and a private mount namespace
with the import path read-only where the kernel allows, with rlimits, and in a private
working directory of its own (mode 0700, also its HOME and TMPDIR), removed when it ends;
the stack's state folder (token, database URL, logs) is hidden from it.
The network stays: a worker talks to Kafka. Memory is bounded by the watcher below (the
address-space rlimit would refuse what TensorFlow maps), time by the job itself.

Warm trainers: for each framework in ``KAFKAML_TRAINER_WARM`` one trainer process is
started ahead of time with its framework imported (seconds, for TensorFlow) and waits
for a spec on its standard input. A job takes it (its spec is written to it, and it
becomes that job's supervised process) and a fresh warm one is started in its place,
so a warm process never runs two jobs. One that dies while waiting is replaced when
the next job of its framework comes.

A bounded trainer runs once: when it ends without having reported (crash, kill,
memory), its results fail with the reason. An inference replica is a
long-running consumer: a crashed replica is started again with back-off (its
uncommitted inputs are redelivered), and only a replica that keeps crashing
fails the inference. An incremental trainer (``JobSpec.incremental``) is restarted the
same way, with the same spec: it resumes after its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from services.orchestrator.launchers.base import OnFailure
from shared.confine import Confinement, Limits, make_work_dir, remove_work_dir
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.process import Backoff, every
from shared.settings import Settings
from shared.stack.processes import open_log, parent_death_hook, rotate_log
from shared.stack.supervisor import LOG_CHECK_EVERY_S
from shared.workerenv import worker_environment

log = logging.getLogger("kafkaml.launcher")

# A replica that crashes this often within the window fails its inference.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0
# A crashed replica restarts after 1 s, then 2, 4, ... up to 30 s (the crashes in the window count).
RESTART_BACKOFF = Backoff(initial=1.0, maximum=30.0)
# What a worker may use: no address-space or CPU-time limit (TensorFlow maps gigabytes, a
# training runs for hours; the watcher enforces the memory limit), room for a model's files.
# The folder holding the services and shared packages (a checkout, or site-packages).
CODE_ROOT = str(Path(__file__).resolve().parents[3])
# No process limit: RLIMIT_NPROC counts every thread of the uid all workers share (TensorFlow's
# pools alone are dozens); each worker is pid 1 of its own PID namespace, killed whole at its end.
WORKER_LIMITS = Limits(address_space_mb=None, cpu_s=None, file_size_mb=4096, open_files=4096, processes=None)


@dataclass
class Unit:
    """One supervised process: a trainer, or one replica of an inference."""

    spec: JobSpec | ServeSpec
    argv: list[str]
    log_path: Path
    restart: bool
    process: asyncio.subprocess.Process | None = None
    work_dir: str | None = None
    stopping: bool = False
    crashes: list[float] = field(default_factory=list)
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


@dataclass
class Warm:
    """A trainer process with its framework imported, waiting for a spec on its standard input."""

    framework: str
    argv: list[str]
    log_path: Path
    process: asyncio.subprocess.Process
    work_dir: str
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


def trainer_argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "services.trainer", "--spec-file", "-", *extra]


def restarts(spec: JobSpec) -> bool:
    """Whether a crashed trainer is started again: an incremental one resumes from its checkpoint."""
    return spec.incremental is not None


def warm_frameworks(settings: Settings) -> list[str]:
    names = [name.strip() for name in settings.trainer_warm.split(",") if name.strip()]
    unknown = sorted(set(names) - {"tensorflow", "pytorch"})
    if unknown:
        raise ValueError(f"KAFKAML_TRAINER_WARM={settings.trainer_warm!r}: unknown framework(s) {unknown}")
    return names


class LocalLauncher:
    def __init__(
        self, settings: Settings, on_failure: OnFailure, *, memory_mb: int = 8192, poll_s: float = 0.5
    ) -> None:
        self.settings = settings
        self.on_failure = on_failure
        self.memory_mb = memory_mb
        self.poll_s = poll_s
        self.units: dict[str, list[Unit]] = {}
        self.logs = Path(settings.home) / "logs" / "jobs"
        # Workers' private working directories, one each: outside the state folder, which is hidden
        # from them (it holds the token and the database URL), one folder per stack.
        home = self.home = str(Path(settings.home).resolve())
        self.work = Path(tempfile.gettempdir()) / f"kafkaml-work-{hashlib.sha256(home.encode()).hexdigest()[:12]}"
        self._rotation: asyncio.Task[None] | None = None
        self.warm_frameworks = warm_frameworks(settings)
        self.warm: dict[str, Warm] = {}
        self._closed = False

    async def launch_training(self, spec: JobSpec) -> None:
        if any(u.alive for u in self.units.get(spec.job_id, [])):
            return
        log_path = self.logs / f"trainer-{spec.job_id}.log"
        # A warm trainer is set up for the CPU: a job with GPUs starts cold.
        warm = self.warm.pop(spec.framework, None) if spec.gpus == 0 else None
        unit: Unit | None = None
        if warm is not None and warm.process.returncode is not None:
            with contextlib.suppress(OSError):
                remove_work_dir(warm.work_dir)
        elif warm is not None:
            if not log_path.exists():  # the warm process's log becomes the job's (the handle follows)
                with contextlib.suppress(OSError):
                    warm.log_path.rename(log_path)
                    warm.log_path = log_path
            unit = Unit(
                spec, warm.argv, warm.log_path, restart=restarts(spec), process=warm.process, work_dir=warm.work_dir
            )
            self.units[spec.job_id] = [unit]
            if await self._hand_spec(unit):
                unit.watcher = asyncio.create_task(self._watch(unit), name=f"watch-{log_path.stem}")
            else:
                unit = None  # it died as the job came: start one cold
        how = "warm"
        if unit is None:
            how = "cold"
            unit = Unit(spec, trainer_argv("--job-id", spec.job_id), log_path, restart=restarts(spec))
            self.units[spec.job_id] = [unit]
            await self._start(unit)
        log.info(
            "launched trainer for job %s (deployment %d, results %s): %s process %s, log %s",
            spec.job_id, spec.deployment_id, [m.result_id for m in spec.models], how, unit.process and unit.process.pid,
            unit.log_path,
        )  # fmt: skip
        await self.prewarm()

    async def prewarm(self) -> None:
        """One warm trainer per framework of ``KAFKAML_TRAINER_WARM`` that has none."""
        for framework in self.warm_frameworks:
            current = self.warm.get(framework)
            if self._closed or (current is not None and current.process.returncode is None):
                continue
            argv = trainer_argv("--framework", framework)
            log_path = self.logs / f"trainer-warm-{framework}-{uuid.uuid4().hex[:8]}.log"
            process, work_dir = await self._spawn(argv, log_path)
            warm = Warm(framework, argv, log_path, process, work_dir)
            warm.watcher = asyncio.create_task(self._watch_warm(warm), name=f"watch-{log_path.stem}")
            self.warm[framework] = warm
            log.info("warm %s trainer started: pid %d", framework, process.pid)

    async def _watch_warm(self, warm: Warm) -> None:
        code = await warm.process.wait()
        if self.warm.get(warm.framework) is warm:
            with contextlib.suppress(OSError):
                remove_work_dir(warm.work_dir)  # died waiting (not taken): replaced by the next job
            del self.warm[warm.framework]
            if not self._closed:
                log.warning(
                    "the warm %s trainer exited with %s while waiting; see %s", warm.framework, code, warm.log_path
                )

    async def launch_inference(self, spec: ServeSpec) -> None:
        if any(u.alive for u in self.units.get(spec.job_id, [])):
            return
        units = [
            Unit(
                spec,
                [
                    *[sys.executable, "-m", "services.inferencer", "--spec-file", "-"],
                    *["--job-id", spec.job_id, "--replica", str(replica)],
                ],
                self.logs / f"inferencer-{spec.job_id}-{replica}.log",
                restart=True,
            )
            for replica in range(spec.replicas)
        ]
        self.units[spec.job_id] = units
        for unit in units:
            await self._start(unit)
        log.info(
            "launched %d inferencer replica(s) for inference %d (job %s), logs in %s",
            spec.replicas, spec.inference_id, spec.job_id, self.logs,
        )  # fmt: skip

    async def stop(self, job_id: str) -> None:
        units = self.units.get(job_id, [])
        for unit in units:
            unit.stopping = True
        await asyncio.gather(*(self._terminate(u) for u in units if u.alive))
        if units:
            log.info("stopped job %s (%d process(es))", job_id, len(units))

    async def running(self) -> set[str]:
        return {job_id for job_id, units in self.units.items() if any(u.alive for u in units)}

    async def reconcile(self, wanted: Iterable[str]) -> set[str]:
        wanted = set(wanted)
        running = await self.running()
        for job_id in sorted(running - wanted):
            log.info("reconcile: %s runs but is no longer wanted; stopping it", job_id)
            await self.stop(job_id)
        await self.prewarm()  # at start-up: the first job finds its trainer ready
        return wanted - running

    async def close(self) -> None:
        self._closed = True
        if self._rotation is not None:
            self._rotation.cancel()
        for job_id in list(self.units):
            await self.stop(job_id)
        warm, self.warm = list(self.warm.values()), {}
        await asyncio.gather(*(self._end(w.process) for w in warm if w.process.returncode is None))
        for units in self.units.values():
            for unit in units:
                if unit.watcher:
                    unit.watcher.cancel()
        for each in warm:
            if each.watcher:
                each.watcher.cancel()
        # What the watchers, cancelled, did not remove: every worker of ours has ended.
        for folder in self.work.glob("*") if self.work.exists() else []:
            with contextlib.suppress(OSError):
                remove_work_dir(str(folder))

    async def _rotate_logs(self) -> None:
        for units in list(self.units.values()):
            for unit in units:
                rotate_log(unit.log_path)

    async def _spawn(self, argv: list[str], log_path: Path) -> tuple[asyncio.subprocess.Process, str]:
        """Starts ``argv`` confined, in a fresh private working directory; the process and that directory."""
        self.logs.mkdir(parents=True, exist_ok=True)
        if self._rotation is None:  # long-lived replicas write for as long as they serve
            self._rotation = asyncio.create_task(every(LOG_CHECK_EVERY_S, self._rotate_logs, what="log rotation"))
        run_as = sandbox_user(self.settings)
        self.work.mkdir(parents=True, exist_ok=True, mode=0o700)
        if run_as is not None:
            self.work.chmod(0o711)  # the sandbox user passes through to its own folder, lists nothing
        work_dir = make_work_dir(str(self.work), run_as=run_as, prefix=f"{log_path.stem}-")
        confinement = Confinement(limits=WORKER_LIMITS, work_dir=work_dir, hidden=(self.home,), run_as=run_as)
        env = worker_environment(self.settings)
        env.update(tls_files_for(self.settings, work_dir, run_as))
        # The worker runs in its working directory: our code is found where we found it.
        env.update(
            HOME=work_dir, TMPDIR=work_dir, PYTHONPATH=os.pathsep.join(filter(None, [CODE_ROOT, env.get("PYTHONPATH")]))
        )
        with open_log(log_path) as output:
            process = await asyncio.create_subprocess_exec(
                *confinement.command(argv),
                env=env,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.PIPE,  # the spec, and nothing else
                start_new_session=True,
                preexec_fn=parent_death_hook(),
            )
        return process, work_dir

    async def _hand_spec(self, unit: Unit) -> bool:
        """Writes the spec to the process's standard input and closes it; False when it is gone.

        Not drained here: the pipe flushes in the background, so a process still importing its
        framework never holds up the orchestrator's loop (a process that dies unread is reported
        by its watcher)."""
        assert unit.process is not None and unit.process.stdin is not None
        if unit.process.returncode is not None:
            return False
        try:
            unit.process.stdin.write(unit.spec.model_dump_json().encode())
            unit.process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def _start(self, unit: Unit) -> None:
        unit.process, unit.work_dir = await self._spawn(unit.argv, unit.log_path)
        await self._hand_spec(unit)  # a process that died at once is reported by its watcher
        unit.watcher = asyncio.create_task(self._watch(unit), name=f"watch-{unit.log_path.stem}")

    async def _terminate(self, unit: Unit, grace_s: float = 10.0) -> None:
        assert unit.process is not None
        await self._end(unit.process, grace_s)

    async def _end(self, process: asyncio.subprocess.Process, grace_s: float = 10.0) -> None:
        # To the supervisor alone, which passes it on once: a second SIGTERM means "now" to a worker.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            self._signal(process, signal.SIGKILL)
            await process.wait()

    @staticmethod
    def _signal(process: asyncio.subprocess.Process | None, sig: int) -> None:
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)

    async def _watch(self, unit: Unit) -> None:
        """Waits for the process; enforces the memory limit; restarts or reports an unexpected end."""
        assert unit.process is not None
        reason: str | None = None
        while unit.process.returncode is None:
            try:
                await asyncio.wait_for(unit.process.wait(), self.poll_s)
            except TimeoutError:
                used = tree_rss_mb(unit.process.pid)
                if used > self.memory_mb:
                    reason = (
                        f"the process used {used:.0f} MB, over its memory limit of {self.memory_mb} MB; "
                        "use a smaller batch size or data set, or raise KAFKAML_TRAINER_MEMORY_MB"
                    )
                    log.warning("%s: %s", unit.log_path.stem, reason)
                    self._signal(unit.process, signal.SIGKILL)
                    await unit.process.wait()
        code = unit.process.returncode
        if unit.work_dir is not None:
            with contextlib.suppress(OSError):
                remove_work_dir(unit.work_dir)
            unit.work_dir = None
        if unit.stopping or (code == 0 and reason is None):
            return
        if reason is None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            reason = f"the {unit.argv[2].rsplit('.', 1)[-1]} process {how}; see {unit.log_path}"
        # Exit status 2: no readable spec, or Kafka refused the login; a restart cures neither.
        if unit.restart and code != REFUSED_EXIT and self._may_restart(unit):
            delay = next(itertools.islice(RESTART_BACKOFF.delays(), len(unit.crashes) - 1, None))
            log.warning("%s; restarting it in %.0f s", reason, delay)
            await asyncio.sleep(delay)
            if not unit.stopping:
                await self._start(unit)
            return
        await self.on_failure(unit.spec, reason)

    @staticmethod
    def _may_restart(unit: Unit) -> bool:
        now = time.monotonic()
        unit.crashes = [t for t in unit.crashes if now - t < RESTART_WINDOW_S] + [now]
        return len(unit.crashes) <= MAX_RESTARTS


# A worker's exit status when its spec is unreadable or Kafka refused its login.
REFUSED_EXIT = 2

# The Kafka TLS files a worker may need, by the setting that names them.
TLS_FILES = {
    "KAFKAML_SSL_CAFILE": "ssl_cafile",
    "KAFKAML_SSL_CERTFILE": "ssl_certfile",
    "KAFKAML_SSL_KEYFILE": "ssl_keyfile",
}


def tls_files_for(settings: Settings, work_dir: str, run_as: tuple[int, int] | None) -> dict[str, str]:
    """Copies of the Kafka TLS files in the worker's own folder, readable by it alone: the
    originals may sit in the stack's home, which the confinement hides and the sandbox user
    may not read. The settings that name them, pointed at the copies."""
    found: dict[str, str] = {}
    for variable, name in TLS_FILES.items():
        source: Path | None = getattr(settings, name)
        if source is None:
            continue
        copy = Path(work_dir) / f"kafka-{source.name}"
        copy.write_bytes(source.read_bytes())
        copy.chmod(0o600)
        if run_as is not None:
            os.chown(copy, *run_as)
        found[variable] = str(copy)
    return found


def sandbox_user(settings: Settings) -> tuple[int, int] | None:
    """The (uid, gid) workers run as when the stack has a sandbox user (docs/security.md#secrets):
    the confinement drops to it after making its namespaces, which needs root."""
    if settings.sandbox_uid is None:
        return None
    gid = settings.sandbox_gid if settings.sandbox_gid is not None else settings.sandbox_uid
    return settings.sandbox_uid, gid


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total / 2**20
