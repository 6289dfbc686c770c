"""What a training progress bar says: one line from a result as the API returns it.

Until the first epoch the trainer reports its phase (``TrainingProgress``: starting,
waiting for data, reading N samples), kept by the metrics service and returned by the
API as the result's ``progress``; after it, the epochs count. ``kafkaml watch`` and the
demo show the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def epochs_done(result: Mapping[str, Any]) -> int:
    curves = result.get("train_metrics") or {}
    return max((len(values) for values in curves.values()), default=0) if isinstance(curves, Mapping) else 0


def phase_text(result: Mapping[str, Any]) -> str:
    """``waiting for data …``, ``read 900 of 1,797 samples``, ``training``, ``finished`` …"""
    status = str(result.get("status", ""))
    if status in ("finished", "failed", "stopped"):
        return status
    if epochs_done(result):
        return "training"
    progress = result.get("progress")
    if isinstance(progress, Mapping) and (progress.get("detail") or progress.get("phase")):
        return str(progress.get("detail") or progress.get("phase"))
    return "starting the trainer" if status == "created" else status.replace("_", " ")
