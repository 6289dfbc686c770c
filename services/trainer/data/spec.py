"""A trainer's job spec: the ``TrainJob`` with its id, from the jobs topic."""

from __future__ import annotations

from shared.events.training import JobSpec, TrainJob
from shared.jobs import find_job_message
from shared.settings import Settings


async def find_job_spec(settings: Settings, job_id: str, timeout_s: float = 60.0) -> JobSpec:
    """The ``TrainJob`` with this id, from the jobs topic (``SpecNotFound`` after ``timeout_s``)."""
    found = await find_job_message(settings, job_id, TrainJob, timeout_s=timeout_s)
    assert found is not None  # no stop event: found or raised
    return found.payload
