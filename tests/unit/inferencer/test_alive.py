"""The liveness file the Kubernetes probe reads: touched by the consume loop, at most once a second."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.inferencer.alive import AliveFile


def test_alive_file_is_touched_and_rate_limited(tmp_path: Path) -> None:
    path = tmp_path / "alive"
    alive = AliveFile(str(path))
    alive.touch()
    assert path.exists()
    os.utime(path, (0, 0))
    alive.touch()  # within a second of the first: not touched again
    assert path.stat().st_mtime == 0
    alive.last -= 2
    alive.touch()
    assert time.time() - path.stat().st_mtime < 5


def test_off_without_a_path() -> None:
    AliveFile(None).touch()  # nothing to do, nothing raised
