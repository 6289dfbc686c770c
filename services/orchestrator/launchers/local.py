"""The local launcher: trainers as supervised processes of the orchestrator.

Each job is ``python -m services.trainer --job-id ID`` in its own process
group (stopping it stops what it spawned), with the Kafka settings and nothing
else (no database URL, no API token), a memory limit enforced by watching the
process tree, and PR_SET_PDEATHSIG so no trainer outlives the orchestrator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from services.orchestrator.launchers.base import OnFailure, worker_env
from shared.events.training import JobSpec
from shared.settings import Settings
from shared.stack.supervisor import parent_death_hook

log = logging.getLogger("kafkaml.launcher")


@dataclass
class LocalJob:
    spec: JobSpec
    process: asyncio.subprocess.Process
    log_path: Path
    stopping: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class LocalLauncher:
    def __init__(
        self, settings: Settings, on_failure: OnFailure, *, memory_mb: int = 8192, poll_s: float = 0.5
    ) -> None:
        self.settings = settings
        self.on_failure = on_failure
        self.memory_mb = memory_mb
        self.poll_s = poll_s
        self.jobs: dict[str, LocalJob] = {}
        self.logs = Path(settings.home) / "logs" / "jobs"

    async def launch_training(self, spec: JobSpec) -> None:
        current = self.jobs.get(spec.job_id)
        if current is not None and current.process.returncode is None:
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"trainer-{spec.job_id}.log"
        with open(log_path, "ab") as output:  # noqa: ASYNC230 - opening a log file does not block
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.trainer",
                "--job-id",
                spec.job_id,
                env=worker_env(self.settings),
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=parent_death_hook(),
            )
        job = LocalJob(spec=spec, process=process, log_path=log_path)
        job.watcher = asyncio.create_task(self._watch(job), name=f"watch-{spec.job_id}")
        self.jobs[spec.job_id] = job
        log.info(
            "launched trainer for job %s (deployment %d, results %s): pid %d, log %s",
            spec.job_id,
            spec.deployment_id,
            [m.result_id for m in spec.models],
            process.pid,
            log_path,
        )

    async def stop(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.process.returncode is not None:
            return
        job.stopping = True
        log.info("stopping trainer of job %s (pid %d)", job_id, job.process.pid)
        await self._terminate(job)

    async def running(self) -> set[str]:
        return {job_id for job_id, job in self.jobs.items() if job.process.returncode is None}

    async def close(self) -> None:
        for job in list(self.jobs.values()):
            job.stopping = True
            if job.process.returncode is None:
                await self._terminate(job)
            if job.watcher:
                job.watcher.cancel()

    async def _terminate(self, job: LocalJob, grace_s: float = 10.0) -> None:
        self._signal(job, signal.SIGTERM)
        try:
            await asyncio.wait_for(job.process.wait(), grace_s)
        except TimeoutError:
            self._signal(job, signal.SIGKILL)
            await job.process.wait()

    @staticmethod
    def _signal(job: LocalJob, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.process.pid, sig)

    async def _watch(self, job: LocalJob) -> None:
        """Waits for the process; enforces the memory limit; reports an unexpected end."""
        reason: str | None = None
        while job.process.returncode is None:
            try:
                await asyncio.wait_for(job.process.wait(), self.poll_s)
            except TimeoutError:
                used = tree_rss_mb(job.process.pid)
                if used > self.memory_mb:
                    reason = (
                        f"the trainer used {used:.0f} MB, over its memory limit of {self.memory_mb} MB; "
                        "use a smaller batch size or data set, or raise KAFKAML_TRAINER_MEMORY_MB"
                    )
                    log.warning("job %s: %s", job.spec.job_id, reason)
                    self._signal(job, signal.SIGKILL)
                    await job.process.wait()
        code = job.process.returncode
        if job.stopping:
            return
        if reason is None and code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            reason = f"the trainer process {how}; see {job.log_path}"
        if reason is not None:
            await self.on_failure(job.spec, reason)


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
