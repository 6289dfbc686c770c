"""The one way a trainer's data fails: a reason the user can act on."""

from __future__ import annotations

from services.trainer.publishing import JobFailure


class DataError(JobFailure):
    """The job cannot get its data; the message says why, in words a user acts on."""
