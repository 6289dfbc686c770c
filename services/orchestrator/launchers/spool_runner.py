"""The runner: starts the workers the orchestrator hands over in the spool, holding no credential.

``python -m services.orchestrator.launchers.spool_runner``, in a container of its own that
shares the spool folder with the orchestrator (``services.orchestrator.launchers.spool`` says
what the files mean). Its environment is the workers' Kafka settings and nothing else: it
refuses to start with a database URL, an API token or a bus key, so that no worker (user
code) is ever the child of a process that holds one. The workers are started, confined and
watched by the local launcher, as on a local stack; the spool is under ``KAFKAML_HOME``, which
that launcher hides from them.

A runner that restarts starts again the jobs it had taken (its workers ended with it), as the
orchestrator does for a local launcher after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys

from services.orchestrator.launchers.local import LocalLauncher
from services.orchestrator.launchers.spool import Spec, decode, encode, job_ids, prepare, spool_dir, write_atomically
from shared.events.training import JobSpec
from shared.process import on_stop_signals, setup_logging
from shared.settings import Settings

log = logging.getLogger("kafkaml.runner")

# Settings a runner must not hold: whoever could read them would be one step from user code.
CREDENTIALS = ("database_url", "api_database_url", "api_token", "bus_key", "validator_key")


class Runner:
    def __init__(self, settings: Settings, *, poll_s: float = 0.5) -> None:
        held = [f"KAFKAML_{name.upper()}" for name in CREDENTIALS if getattr(settings, name, None)]
        if held:
            raise ValueError(f"the runner holds no credential, but {', '.join(held)} is set: remove it")
        self.folder = prepare(spool_dir(settings))
        self.taken = self.folder / "taken"
        self.poll_s = poll_s
        self.launcher = LocalLauncher(settings, self.failed, memory_mb=settings.trainer_memory_mb)

    async def failed(self, spec: Spec, reason: str) -> None:
        """The local launcher's report of a job that ended without saying so: for the orchestrator."""
        write_atomically(self.folder / f"{spec.job_id}.failed", encode(spec, reason=reason))
        (self.taken / f"{spec.job_id}.spec").unlink(missing_ok=True)

    async def launch(self, spec: Spec) -> None:
        try:
            if isinstance(spec, JobSpec):
                await self.launcher.launch_training(spec)
            else:
                await self.launcher.launch_inference(spec)
        except Exception as exc:
            log.exception("could not start job %s", spec.job_id)
            await self.failed(spec, f"could not start the workload: {type(exc).__name__}: {exc}")

    async def start(self) -> None:
        """The jobs taken by an earlier run, started again; the warm trainers."""
        for path in sorted(self.taken.glob("*.spec")):
            try:
                await self.launch(decode(json.loads(path.read_text())))
            except (OSError, ValueError) as exc:
                log.warning("spool: %s is unreadable (%s); dropped", path.name, exc)
                path.unlink(missing_ok=True)
        await self.launcher.prewarm()

    async def step(self) -> None:
        """One look at the spool: stops, new specs, ended jobs."""
        for job_id in sorted(job_ids(self.folder, ".stop")):
            await self.launcher.stop(job_id)
            (self.taken / f"{job_id}.spec").unlink(missing_ok=True)
            (self.folder / f"{job_id}.stop").unlink(missing_ok=True)
            log.info("stopped job %s as the orchestrator asked", job_id)
        for path in sorted(self.folder.glob("*.spec")):
            try:
                spec = decode(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                log.warning("spool: %s is not a job spec (%s); dropped", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            path.replace(self.taken / path.name)
            log.info("took job %s", spec.job_id)
            await self.launch(spec)
        # A trainer that ended having reported (exit 0) is done; a replica that crashed waits for its restart.
        for job_id in job_ids(self.taken, ".spec"):
            units = self.launcher.units.get(job_id, [])
            if units and not any(u.alive or u.restart for u in units):
                (self.taken / f"{job_id}.spec").unlink(missing_ok=True)
                del self.launcher.units[job_id]

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)
        finally:
            await self.launcher.close()  # taken specs stay: the next run starts them again


async def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    stop = asyncio.Event()
    on_stop_signals(lambda _signum: stop.set())
    runner = Runner(settings)
    log.info("runner started: spool %s", runner.folder)
    await runner.run(stop)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ValueError as exc:
        sys.exit(f"kafkaml runner: {exc}")
