"""The liveness file: proof that a consume loop goes on, for Kubernetes' liveness probe.

A long-running consumer touches ``$KAFKAML_ALIVE_FILE`` whenever a poll came
back (empty or not) or a record was processed; the probe fails once the file is
older than a bound. So the signal is "the loop goes on", not "the process
exists": a wedged loop gets its pod restarted. ``probe_command`` is the one text
of that check (the static manifests in ``deploy/k8s`` and the launcher's
inference Deployments run the same one-liner).
"""

from __future__ import annotations

import os
import time

__all__ = ["ALIVE_FILE_VARIABLE", "AliveFile", "probe_command"]

ALIVE_FILE_VARIABLE = "KAFKAML_ALIVE_FILE"


class AliveFile:
    """A file touched by the consume loop; a liveness check reads its age ("last message
    processed or polled", not "process alive"). Off unless ``KAFKAML_ALIVE_FILE`` names it."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.last = 0.0

    @classmethod
    def from_env(cls) -> AliveFile:
        return cls(os.environ.get(ALIVE_FILE_VARIABLE))

    def touch(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self.last < 1.0:  # at most once a second: a hot loop stays cheap
            return
        self.last = now
        with open(self.path, "a"):
            os.utime(self.path)


def probe_command(default_path: str, max_age_s: int) -> list[str]:
    """An exec probe that exits 0 while the alive file (``$KAFKAML_ALIVE_FILE``, else
    ``default_path``) was touched within ``max_age_s``; a missing file fails it too."""
    code = (
        "import os,sys,time;"
        f"p=os.environ.get('{ALIVE_FILE_VARIABLE}','{default_path}');"
        f"sys.exit(0 if time.time()-os.stat(p).st_mtime<{max_age_s} else 1)"
    )
    return ["python", "-c", code]
