"""Finding a worker's job spec: trainers and inferencers read theirs from the jobs topic."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

from shared.errors import SpecNotFound, Undecodable
from shared.events import Envelope, decode
from shared.kafka import make_consumer
from shared.settings import Settings
from shared.topics import topics_for

E = TypeVar("E", bound=Envelope)


async def find_job_message(
    settings: Settings, job_id: str, kind: type[E], *, timeout_s: float = 60.0, stop: asyncio.Event | None = None
) -> E | None:
    """Scans the jobs topic from the beginning (no group) for the ``kind`` message whose
    ``payload.job_id`` is ``job_id``. None when ``stop`` was set first; raises
    ``SpecNotFound`` after ``timeout_s``."""
    topic = topics_for(settings).jobs
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                return None
            for records in (await consumer.getmany(timeout_ms=500, max_records=1000)).values():
                for record in records:
                    try:
                        message = decode(record.value)
                    except Undecodable:
                        continue
                    if isinstance(message, kind) and getattr(message.payload, "job_id", None) == job_id:
                        return message
    finally:
        await consumer.stop()
    raise SpecNotFound(f"no {kind.__name__} with job_id {job_id!r} on {topic} within {timeout_s:g} s")
