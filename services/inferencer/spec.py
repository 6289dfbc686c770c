"""A replica's spec: the ``ServeModel`` with its job id, read from the jobs topic."""

from __future__ import annotations

import asyncio
from typing import Final

from shared.events.inference import ServeModel, ServeSpec
from shared.jobs import find_job_message
from shared.settings import Settings

__all__ = ["SPEC_TIMEOUT_S", "find_serve_spec"]

SPEC_TIMEOUT_S: Final = 60.0


async def find_serve_spec(
    settings: Settings, job_id: str, timeout_s: float = SPEC_TIMEOUT_S, stop: asyncio.Event | None = None
) -> ServeSpec | None:
    """The ``ServeModel`` spec with this id from the jobs topic; None when ``stop`` was set
    first; SpecNotFound after ``timeout_s``."""
    found = await find_job_message(settings, job_id, ServeModel, timeout_s=timeout_s, stop=stop)
    return found.payload if found is not None else None
