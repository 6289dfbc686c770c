"""What a replica tells the rest of the system: its status, its statistics and its version, on the events topic."""

from __future__ import annotations

import logging
from typing import Final

from services.inferencer.stats import StatsWindow
from shared.events.inference import (
    InferenceStats,
    InferenceStatus,
    InferenceStatusChange,
    InferenceStatusChanged,
    ServeSpec,
)
from shared.events.signing import Key
from shared.events.versions import InferenceVersionChanged, VersionChange
from shared.kafka import Producer
from shared.process import truncate
from shared.settings import Settings

__all__ = ["MAX_ERROR", "ReplicaEvents"]

log = logging.getLogger("kafkaml.inferencer")

# A failure's reason is shown to a user: keep it readable.
MAX_ERROR: Final = 2000


class ReplicaEvents:
    """What a replica tells the rest of the system: its status and its statistics."""

    def __init__(self, producer: Producer, settings: Settings, spec: ServeSpec, replica: str) -> None:
        self.producer = producer
        self.spec = spec
        self.replica = replica
        # The inference's own key (from its spec): consumers refuse our events without it.
        self.signer = Key.of(spec.signing_key) if spec.signing_key is not None else None

    async def status(self, status: InferenceStatus, error: str | None = None) -> None:
        change = InferenceStatusChange(
            inference_id=self.spec.inference_id,
            status=status,
            replica=self.replica,
            error=None if error is None else truncate(error, MAX_ERROR),
        )
        await self.producer.publish(InferenceStatusChanged(payload=change), signer=self.signer)
        log.info("status %s%s", status, f": {error}" if error else "")

    async def version_changed(self, version: int) -> None:
        """This replica serves ``version`` from its next micro-batch on."""
        change = VersionChange(inference_id=self.spec.inference_id, replica=self.replica, version=version)
        await self.producer.publish(InferenceVersionChanged(payload=change), signer=self.signer)

    async def stats(self, window: StatsWindow, lag: int | None) -> None:
        stats = window.take(self.spec.inference_id, self.replica, lag)
        await self.producer.publish(InferenceStats(payload=stats), signer=self.signer)

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        log.info(
            "stats: %d msgs in %.1f s (%.1f/s), latency p50 %s p95 %s p99 %s ms, errors %d, lag %s, predicted %s",
            stats.messages,
            stats.window_s,
            stats.throughput,
            ms(stats.latency_p50_ms),
            ms(stats.latency_p95_ms),
            ms(stats.latency_p99_ms),
            stats.errors,
            "-" if stats.lag is None else stats.lag,
            stats.predicted or "-",
        )
