"""A replica's statistics window, published as ``InferenceStats`` every ``stats_interval_s``.

What the numbers mean:

- ``messages``: inputs whose output (prediction, or tensor sent up a
  distributed chain) the broker acknowledged in the window; ``throughput`` is
  that count over the window's length.
- latency: from the input record's Kafka timestamp (set by its producer:
  CreateTime) to the moment its output was acknowledged. On one machine the
  clocks are the same; across machines the figure includes the clock skew
  between the producer's host and ours.
- ``errors``: inputs sent to the dead-letter topic (undecodable, or the model
  failed on them alone).
- ``predicted``: for classifiers (outputs of more than one value), how many
  inputs each class index won (argmax). A single-output model (regression,
  or a sigmoid binary classifier: the two cannot be told apart) counts none.
- ``lag``: best effort, computed by the caller from the consumer's known high
  watermarks; the embedded broker's end offsets are wrong when records arrive
  in batches.

Latencies are kept as one small array per batch until the window closes
(tens of thousands of floats per window at full speed: a few MB at most).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shared.events.inference import Stats

__all__ = ["StatsWindow", "percentiles", "predicted_classes"]


def percentiles(values: np.ndarray[Any, Any], qs: Sequence[float] = (50, 95, 99)) -> list[float] | None:
    """The ``qs`` percentiles of ``values`` (linear interpolation); None for no values."""
    if values.size == 0:
        return None
    return [float(v) for v in np.percentile(values, list(qs))]


def predicted_classes(prediction: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """The argmax class of each row of a classifier's output; None when the output has one value per row."""
    if prediction.ndim == 0 or len(prediction) == 0:
        return None
    rows = prediction.reshape(len(prediction), -1)
    if rows.shape[1] < 2:
        return None
    classes: np.ndarray[Any, Any] = rows.argmax(axis=1)
    return classes


class StatsWindow:
    """Counts since the last :meth:`take`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._reset()

    def _reset(self) -> None:
        self.started = self.clock()
        self.messages = 0
        self.errors = 0
        self._latencies: list[np.ndarray[Any, Any]] = []
        self._classes = np.zeros(0, dtype=np.int64)

    def add(
        self, messages: int, latencies_ms: np.ndarray[Any, Any], classes: np.ndarray[Any, Any] | None = None
    ) -> None:
        """Outputs acknowledged: their count, their latencies (records without a timestamp have none),
        and the predicted classes of those that were predictions."""
        self.messages += messages
        if len(latencies_ms):
            self._latencies.append(np.asarray(latencies_ms, dtype=np.float64))
        if classes is not None and len(classes):
            counts = np.bincount(classes.astype(np.int64, copy=False))
            if len(counts) > len(self._classes):
                counts[: len(self._classes)] += self._classes
                self._classes = counts
            else:
                self._classes[: len(counts)] += counts

    def add_errors(self, count: int) -> None:
        self.errors += count

    def take(self, inference_id: int, replica: str, lag: int | None = None) -> Stats:
        """The window as a ``Stats`` payload; a new window starts."""
        window_s = max(self.clock() - self.started, 1e-9)
        latencies = np.concatenate(self._latencies) if self._latencies else np.zeros(0)
        quantiles = percentiles(latencies)
        p50, p95, p99 = quantiles if quantiles is not None else (None, None, None)
        stats = Stats(
            inference_id=inference_id,
            replica=replica,
            window_s=round(window_s, 3),
            messages=self.messages,
            throughput=round(self.messages / window_s, 3),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            latency_p99_ms=p99,
            errors=self.errors,
            lag=lag,
            predicted={str(index): int(count) for index, count in enumerate(self._classes) if count},
        )
        self._reset()
        return stats
