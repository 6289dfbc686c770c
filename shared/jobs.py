"""A worker's job spec, handed over by its launcher (never read from a topic: specs carry secrets)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import SpecNotFound

P = TypeVar("P", bound=BaseModel)

# The path that means "the spec comes on standard input" (the local launcher writes it there).
STDIN = "-"


def read_spec(source: str, kind: type[P], job_id: str | None = None) -> P:
    """A worker's spec as its launcher handed it over: on standard input (``-``: the local
    launcher writes it there and closes the pipe) or in a file only the worker can read (a
    Kubernetes Secret mounted into its pod). Specs carry secrets (a job's signing key), so they
    never travel on a topic. Raises ``SpecNotFound`` when it is missing, not a ``kind``, or for
    another job than ``job_id`` (when given)."""
    where = "standard input" if source == STDIN else source
    try:
        text = sys.stdin.buffer.read() if source == STDIN else Path(source).read_bytes()
    except OSError as exc:
        raise SpecNotFound(f"cannot read the {kind.__name__} from {where}: {exc.strerror or exc}") from None
    if not text.strip():
        raise SpecNotFound(f"no {kind.__name__} on {where}: the launcher handed over nothing")
    try:
        spec = kind.model_validate_json(text)
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
        raise SpecNotFound(f"the {kind.__name__} on {where} does not read: {problem}") from None
    found = getattr(spec, "job_id", None)
    if job_id is not None and found != job_id:
        raise SpecNotFound(f"the spec handed over is for job {found}, not {job_id}")
    return spec
