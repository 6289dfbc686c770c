"""The one way a trainer's data fails: a reason the user can act on."""

from __future__ import annotations

from shared.errors import WorkloadFailed


class DataError(WorkloadFailed):
    """The job cannot get its data; the message says why, in words a user acts on."""
