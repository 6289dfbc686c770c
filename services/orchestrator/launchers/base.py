"""The launcher interface; what a worker process may know is ``shared.workerenv``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from shared.events.inference import ServeSpec
from shared.events.training import JobSpec

# Called when a job ends without having said so itself (crash, kill, memory, a replica that
# keeps crashing), with a reason a user understands.
OnFailure = Callable[[JobSpec | ServeSpec, str], Awaitable[None]]


class Launcher(Protocol):
    """Runs workloads somewhere: local processes, or Kubernetes Jobs and Deployments."""

    async def launch_training(self, spec: JobSpec) -> None:
        """Starts the job unless it already runs (idempotent on ``spec.job_id``)."""

    async def launch_inference(self, spec: ServeSpec) -> None:
        """Starts ``spec.replicas`` replicas unless they already run (idempotent on ``spec.job_id``)."""

    async def stop(self, job_id: str) -> None:
        """Stops the job (every replica) if it runs (idempotent); no failure is reported for it."""

    async def running(self) -> set[str]:
        """Ids of the jobs running now."""

    async def reconcile(self, wanted: Iterable[str]) -> set[str]:
        """Stops what runs but is not ``wanted`` (the database's in-flight jobs and
        inferences); returns the wanted ids that do not run, for the caller to launch."""

    async def close(self) -> None:
        """Stops watching; a local launcher also stops its processes."""
