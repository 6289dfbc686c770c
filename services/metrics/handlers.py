"""Event handlers of the metrics service: plain async functions.

Each takes an event and a ``MetricsUnitOfWork`` and returns the messages to
publish after the commit: ``ResultStored`` once a result's final metrics and its
model are both stored (the orchestrator then says ``finished``), or
``ArtifactRejected``. Each write is an upsert on the row's key, so an event
applied twice changes nothing. A handler raises ``Invalid`` for an event that
can never be stored (its result does not exist): the service dead-letters that
event and the stream goes on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from services.metrics.uow import MetricsUnitOfWork
from shared.artifacts import chunk_bytes, sha256_of
from shared.db.tables import FinalMetrics
from shared.errors import Invalid
from shared.events import (
    ArtifactChunk,
    ArtifactRejected,
    Envelope,
    EpochCompleted,
    InferenceStats,
    RejectedArtifact,
    ResultStored,
    StoredResult,
    TrainingFinished,
    TrainingProgress,
)
from shared.routing import Router

log = logging.getLogger("kafkaml.metrics")


def finite(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    """NaN and ±inf (a diverging loss) as null: JSON, and so JSONB, has no such numbers."""
    return {name: value if value is not None and math.isfinite(value) else None for name, value in metrics.items()}


async def require_result(uow: MetricsUnitOfWork, result_id: int) -> None:
    # Results are created before their trainer starts, so a missing one was deleted (or never
    # existed): storing would violate the foreign key forever, so the event is refused instead.
    if not await uow.metrics.result_exists(result_id):
        raise Invalid(f"training result {result_id} does not exist (deleted, or never created)", field="result_id")


async def announce_if_stored(uow: MetricsUnitOfWork, result_id: int, sha256: str, size: int) -> list[Envelope]:
    """``ResultStored`` once the final metrics and the artifact they name are both stored."""
    final = await uow.metrics.final(result_id)
    if final is None or final.artifact_sha256 != sha256 or await uow.artifacts.stored_sha256(result_id) != sha256:
        return []
    return [ResultStored(payload=StoredResult(result_id=result_id, sha256=sha256, size=size))]


async def record_epoch(event: EpochCompleted, uow: MetricsUnitOfWork) -> list[Envelope]:
    """One point of the training curves (train and validation metrics of an epoch)."""
    epoch = event.payload
    await require_result(uow, epoch.result_id)
    await uow.metrics.upsert_epoch(epoch.result_id, epoch.epoch, finite(epoch.train), finite(epoch.val))
    uow.tally.epochs += 1
    return []


async def record_progress(event: TrainingProgress, uow: MetricsUnitOfWork) -> list[Envelope]:
    """What the trainer is doing before its first epoch (the result view and progress bars show it)."""
    report = event.payload
    await require_result(uow, report.result_id)
    await uow.metrics.upsert_progress(report.result_id, report.phase, report.detail, report.done, report.total)
    return []


async def record_final_metrics(event: TrainingFinished, uow: MetricsUnitOfWork) -> list[Envelope]:
    """Test metrics, confusion matrix, training time, sample counts and the artifact's checksum."""
    outcome = event.payload
    await require_result(uow, outcome.result_id)
    await uow.metrics.upsert_final(
        FinalMetrics(
            result_id=outcome.result_id,
            test_metrics=finite(outcome.test_metrics),
            confusion_matrix=outcome.confusion_matrix,
            training_time=outcome.training_time,
            samples=outcome.samples.model_dump(mode="json"),
            artifact_sha256=outcome.artifact.sha256.lower(),
            artifact_format=outcome.artifact.format,
        )
    )
    uow.tally.finals += 1
    return await announce_if_stored(uow, outcome.result_id, outcome.artifact.sha256.lower(), outcome.artifact.size)


async def store_artifact_chunk(event: ArtifactChunk, uow: MetricsUnitOfWork) -> list[Envelope]:
    """Keeps a chunk until all ``count`` chunks of its artifact are here, then reassembles them.

    The whole artifact is kept only if its sha256 is the one every chunk announced.
    On a mismatch the chunks are dropped, an error is logged and the result fails
    (``ArtifactRejected``); nothing is dead-lettered, since no single record is at
    fault and a dead-lettered chunk could not be replayed into a whole artifact.
    """
    chunk = event.payload
    sha256 = chunk.sha256.lower()
    if chunk.index >= chunk.count:
        raise Invalid(f"chunk index {chunk.index} is not below its count {chunk.count}", field="index")
    try:
        data = chunk_bytes(chunk)
    except ValueError as exc:
        raise Invalid(str(exc), field="data") from exc
    await require_result(uow, chunk.result_id)
    if await uow.artifacts.stored_sha256(chunk.result_id) == sha256:
        return []  # that artifact is already whole: a chunk sent again after it was assembled
    # Chunks with another checksum belong to an older attempt of the same result: the newer one wins.
    await uow.artifacts.discard_chunks(chunk.result_id, keep_sha256=sha256)
    await uow.artifacts.put_chunk(chunk.result_id, chunk.index, chunk.count, sha256, data)
    uow.tally.chunks += 1
    if await uow.artifacts.chunks_present(chunk.result_id, sha256, chunk.count) < chunk.count:
        return []
    artifact = b"".join(await uow.artifacts.chunk_data(chunk.result_id, sha256))
    await uow.artifacts.discard_chunks(chunk.result_id)
    actual = sha256_of(artifact)
    if actual != sha256:
        log.error(
            "artifact of result %s dropped: its %s chunks (%s bytes) hash to sha256 %s, the trainer announced %s",
            chunk.result_id,
            chunk.count,
            len(artifact),
            actual,
            sha256,
        )
        uow.tally.corrupt.append(chunk.result_id)
        error = (
            f"the trained model arrived corrupted (its {chunk.count} chunks do not match their checksum); train again"
        )
        return [ArtifactRejected(payload=RejectedArtifact(result_id=chunk.result_id, error=error))]
    await uow.artifacts.store(chunk.result_id, sha256, artifact)
    uow.tally.artifacts.append((chunk.result_id, len(artifact)))
    return await announce_if_stored(uow, chunk.result_id, sha256, len(artifact))


async def record_inference_stats(event: InferenceStats, uow: MetricsUnitOfWork) -> list[Envelope]:
    """One window of an inference replica's statistics (a row per event: a time series)."""
    stats = event.payload
    if not await uow.metrics.inference_exists(stats.inference_id):
        # The inference was deleted while a replica was still reporting: nothing to attach it to.
        log.info("statistics of deleted inference %d dropped", stats.inference_id)
        return []
    await uow.metrics.add_inference_stats(event.event_id, stats)
    uow.tally.stats += 1
    return []


ROUTER: Router[MetricsUnitOfWork] = Router()
ROUTER.event(EpochCompleted, record_epoch)
ROUTER.event(TrainingFinished, record_final_metrics)
ROUTER.event(ArtifactChunk, store_artifact_chunk)
ROUTER.event(InferenceStats, record_inference_stats)
ROUTER.event(TrainingProgress, record_progress)
