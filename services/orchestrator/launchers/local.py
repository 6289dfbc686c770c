"""The local launcher: trainers and inferencers as supervised processes of the orchestrator.

Each process gets the workers' environment (``shared.workerenv``: the Kafka
settings, no database URL, no API token), runs as the stack's sandbox user when it has one
(``KAFKAML_SANDBOX_UID``), runs in its own process group (stopping it stops what it
spawned), has a memory limit enforced by watching its process tree, and
carries PR_SET_PDEATHSIG so that none outlives the orchestrator.

A trainer runs once: when it ends without having reported (crash, kill,
memory), its results fail with the reason. An inference replica is a
long-running consumer: a crashed replica is started again with back-off (its
uncommitted inputs are redelivered), and only a replica that keeps crashing
fails the inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from services.orchestrator.launchers.base import OnFailure
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


@dataclass
class Unit:
    """One supervised process: a trainer, or one replica of an inference."""

    spec: JobSpec | ServeSpec
    argv: list[str]
    log_path: Path
    restart: bool
    process: asyncio.subprocess.Process | None = None
    stopping: bool = False
    crashes: list[float] = field(default_factory=list)
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


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
        self._rotation: asyncio.Task[None] | None = None

    async def launch_training(self, spec: JobSpec) -> None:
        if any(u.alive for u in self.units.get(spec.job_id, [])):
            return
        argv = [sys.executable, "-m", "services.trainer", "--job-id", spec.job_id]
        unit = Unit(spec, argv, self.logs / f"trainer-{spec.job_id}.log", restart=False)
        self.units[spec.job_id] = [unit]
        await self._start(unit)
        log.info(
            "launched trainer for job %s (deployment %d, results %s): pid %s, log %s",
            spec.job_id, spec.deployment_id, [m.result_id for m in spec.models], unit.process and unit.process.pid,
            unit.log_path,
        )  # fmt: skip

    async def launch_inference(self, spec: ServeSpec) -> None:
        if any(u.alive for u in self.units.get(spec.job_id, [])):
            return
        units = [
            Unit(
                spec,
                [sys.executable, "-m", "services.inferencer", "--job-id", spec.job_id, "--replica", str(replica)],
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
        return wanted - running

    async def close(self) -> None:
        if self._rotation is not None:
            self._rotation.cancel()
        for job_id in list(self.units):
            await self.stop(job_id)
        for units in self.units.values():
            for unit in units:
                if unit.watcher:
                    unit.watcher.cancel()

    async def _rotate_logs(self) -> None:
        for units in list(self.units.values()):
            for unit in units:
                rotate_log(unit.log_path)

    async def _start(self, unit: Unit) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self._rotation is None:  # long-lived replicas write for as long as they serve
            self._rotation = asyncio.create_task(every(LOG_CHECK_EVERY_S, self._rotate_logs, what="log rotation"))
        with open_log(unit.log_path) as output:
            unit.process = await asyncio.create_subprocess_exec(
                *unit.argv,
                env=worker_environment(self.settings),
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=parent_death_hook(),
                **sandbox_user(self.settings),
            )
        unit.watcher = asyncio.create_task(self._watch(unit), name=f"watch-{unit.log_path.stem}")

    async def _terminate(self, unit: Unit, grace_s: float = 10.0) -> None:
        assert unit.process is not None
        self._signal(unit, signal.SIGTERM)
        try:
            await asyncio.wait_for(unit.process.wait(), grace_s)
        except TimeoutError:
            self._signal(unit, signal.SIGKILL)
            await unit.process.wait()

    @staticmethod
    def _signal(unit: Unit, sig: int) -> None:
        if unit.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(unit.process.pid, sig)

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
                    self._signal(unit, signal.SIGKILL)
                    await unit.process.wait()
        code = unit.process.returncode
        if unit.stopping or (code == 0 and reason is None):
            return
        if reason is None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            reason = f"the {unit.argv[2].rsplit('.', 1)[-1]} process {how}; see {unit.log_path}"
        if unit.restart and self._may_restart(unit):
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


def sandbox_user(settings: Settings) -> dict[str, Any]:
    """Run the worker as the sandbox user when the stack has one (docs/security.md#secrets)."""
    if settings.sandbox_uid is None:
        return {}
    gid = settings.sandbox_gid if settings.sandbox_gid is not None else settings.sandbox_uid
    return {"user": settings.sandbox_uid, "group": gid, "extra_groups": []}


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
