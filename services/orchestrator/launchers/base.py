"""The launcher interface, and what every worker process may know."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings

# Called when a job ends without having said so itself (crash, kill, memory, a replica that
# keeps crashing), with a reason a user understands.
OnFailure = Callable[[JobSpec | ServeSpec, str], Awaitable[None]]

# Settings a worker may see: how to reach Kafka, nothing else. No database URL, no token.
WORKER_SETTINGS = (
    "bootstrap_servers",
    "topic_prefix",
    "control_topic",
    "enable_idempotence",
    "fetch_max_wait_ms",
    "log_level",
)
_SECRET_MARKERS = ("DATABASE", "PASSWORD", "SECRET", "TOKEN", "KUBERNETES", "PGPASS", "PGUSER")


def worker_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a trainer or inferencer: ``base`` (default: ours) without any
    Kafka-ML setting or secret, plus the Kafka settings a worker needs."""
    source = dict(os.environ if base is None else base)
    env = {
        k: v
        for k, v in source.items()
        if not k.startswith("KAFKAML_") and not any(marker in k.upper() for marker in _SECRET_MARKERS)
    }
    for name in WORKER_SETTINGS:
        value = getattr(settings, name)
        if value is not None:
            env[f"KAFKAML_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
