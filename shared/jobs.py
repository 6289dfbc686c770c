"""A worker's job spec: handed over by its launcher (``read_spec``); the jobs-topic scan is the old way."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

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


P = TypeVar("P", bound=BaseModel)

# The path that means "the spec comes on standard input" (the local launcher writes it there).
STDIN = "-"


def read_spec(source: str, kind: type[P]) -> P:
    """A worker's spec as its launcher handed it over: on standard input (``-``: the local
    launcher writes it there and closes the pipe) or in a file only the worker can read (a
    Kubernetes Secret mounted into its pod). Specs carry secrets (a job's signing key), so they
    never travel on a topic. Raises ``SpecNotFound`` when it is missing or not a ``kind``."""
    where = "standard input" if source == STDIN else source
    try:
        text = sys.stdin.buffer.read() if source == STDIN else Path(source).read_bytes()
    except OSError as exc:
        raise SpecNotFound(f"cannot read the {kind.__name__} from {where}: {exc.strerror or exc}") from None
    if not text.strip():
        raise SpecNotFound(f"no {kind.__name__} on {where}: the launcher handed over nothing")
    try:
        return kind.model_validate_json(text)
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
        raise SpecNotFound(f"the {kind.__name__} on {where} does not read: {problem}") from None
