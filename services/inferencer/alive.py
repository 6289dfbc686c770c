"""The liveness file: proof that the consume loop goes on, for Kubernetes' liveness check."""

from __future__ import annotations

import os
import time

__all__ = ["AliveFile"]


class AliveFile:
    """A file touched by the consume loop; a liveness check reads its age ("last message
    processed or polled", not "process alive"). Off unless ``KAFKAML_ALIVE_FILE`` names it."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.last = 0.0

    @classmethod
    def from_env(cls) -> AliveFile:
        return cls(os.environ.get("KAFKAML_ALIVE_FILE"))

    def touch(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self.last < 1.0:  # at most once a second
            return
        self.last = now
        with open(self.path, "a"):
            os.utime(self.path)
