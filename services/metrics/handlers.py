"""Event handlers of the metrics service: plain async functions.

Each takes an event and a ``MetricsUnitOfWork`` and returns the messages to
publish after the commit: ``ModelVersionStored`` once a version's bytes are whole
and announced (by ``ModelVersionPublished``, or for a bounded training's version 1
by ``TrainingFinished``: either may come before the chunks, which travel on another
topic), ``ResultStored`` once a result's final metrics and the model they name are
both stored (the orchestrator then says ``finished``), or ``ArtifactRejected``.
Each write is an upsert on the row's key, so an event applied twice changes nothing.
A handler raises ``Invalid`` for an event that can never be stored (its result does not
exist): the service dead-letters that event and the stream goes on.
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
    ModelVersionPublished,
    ModelVersionStored,
    RejectedArtifact,
    ResultStored,
    StoredResult,
    TrainingFinished,
    TrainingProgress,
    WindowCompleted,
)
from shared.events.versions import ModelVersion
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


def bounded_version(final: FinalMetrics) -> ModelVersion:
    """What a bounded training's TrainingFinished says of its model, its version 1."""
    return ModelVersion(
        result_id=final.result_id,
        version=1,
        sha256=final.artifact_sha256,
        size=0,  # the stored size is the bytes'
        format=final.artifact_format,
        metrics=final.test_metrics,
    )


async def whole(uow: MetricsUnitOfWork, result_id: int, version: int, sha256: str) -> bytes | None:
    """The version's bytes once every chunk of that artifact is here (and they match), else None."""
    count = await uow.artifacts.chunk_count(result_id, version, sha256)
    if count is None or await uow.artifacts.chunks_present(result_id, version, sha256, count) < count:
        return None
    data = b"".join(await uow.artifacts.chunk_data(result_id, version, sha256))
    return data if sha256_of(data) == sha256 else None


async def store_version(uow: MetricsUnitOfWork, described: ModelVersion, data: bytes) -> list[Envelope]:
    """Stores a whole version; ``ModelVersionStored``, and ``ResultStored`` when the result's
    final metrics name these bytes (a bounded training's model, or the last version of an
    incremental one)."""
    stored = described.model_copy(update={"sha256": described.sha256.lower(), "size": len(data)})
    await uow.artifacts.store(stored, data)
    await uow.artifacts.discard_chunks(stored.result_id, stored.version)
    await uow.artifacts.forget_announcement(stored.result_id, stored.version)
    uow.tally.artifacts.append((stored.result_id, len(data)))
    uow.tally.versions.append((stored.result_id, stored.version))
    answers: list[Envelope] = [ModelVersionStored(payload=stored)]
    final = await uow.metrics.final(stored.result_id)
    if final is not None and final.artifact_sha256 == stored.sha256:
        answers.append(
            ResultStored(payload=StoredResult(result_id=stored.result_id, sha256=stored.sha256, size=len(data)))
        )
    return answers


async def store_if_whole(
    uow: MetricsUnitOfWork, result_id: int, version: int, sha256: str, data: bytes | None = None
) -> list[Envelope]:
    """Stores the version once both its chunks and its announcement are here (nothing otherwise);
    ``data``: its bytes, already joined and checked."""
    announced = await uow.artifacts.announcement(result_id, version)
    if announced is not None and announced.sha256 == sha256:
        described = ModelVersion(
            result_id=result_id,
            version=version,
            sha256=sha256,
            size=announced.size,
            format=announced.format,
            metrics=announced.metrics,
            window=announced.window,
        )
    else:
        final = await uow.metrics.final(result_id) if version == 1 else None
        if final is None or final.artifact_sha256 != sha256:
            return []  # the chunks wait for what they are
        described = bounded_version(final)
    data = data if data is not None else await whole(uow, result_id, version, sha256)
    return [] if data is None else await store_version(uow, described, data)


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
    sha256 = outcome.artifact.sha256.lower()
    stored = await uow.artifacts.version_with_sha256(outcome.result_id, sha256)
    if stored is not None:  # an incremental training's last version (or this model, stored before)
        return [ResultStored(payload=StoredResult(result_id=outcome.result_id, sha256=sha256, size=stored.size))]
    return await store_if_whole(uow, outcome.result_id, 1, sha256)


async def store_artifact_chunk(event: ArtifactChunk, uow: MetricsUnitOfWork) -> list[Envelope]:
    """Keeps a chunk until all ``count`` chunks of its artifact are here, then checks them.

    A checkpoint (an incremental trainer's own state between versions) is not stored: only
    that trainer reads it back. Chunks of version n (None: a bounded training's model,
    version 1) make version n once whole and announced (see ``store_if_whole``). The whole
    is kept only if its sha256 is the one every chunk announced. On a mismatch the chunks
    are dropped, an error is logged and a bounded result fails (``ArtifactRejected``; a
    corrupted version of an incremental training is dropped, its earlier versions stay);
    nothing is dead-lettered, since no single record is at fault and a dead-lettered chunk
    could not be replayed into a whole artifact.
    """
    chunk = event.payload
    if chunk.purpose == "checkpoint":
        return []
    sha256 = chunk.sha256.lower()
    version = chunk.version or 1
    if chunk.index >= chunk.count:
        raise Invalid(f"chunk index {chunk.index} is not below its count {chunk.count}", field="index")
    try:
        data = chunk_bytes(chunk)
    except ValueError as exc:
        raise Invalid(str(exc), field="data") from exc
    await require_result(uow, chunk.result_id)
    if await uow.artifacts.stored_sha256(chunk.result_id, version) == sha256:
        return []  # that version is already stored: a chunk sent again after it was assembled
    # Chunks with another checksum belong to an older attempt of the same version: the newer one wins.
    await uow.artifacts.discard_chunks(chunk.result_id, version, keep_sha256=sha256)
    await uow.artifacts.put_chunk(chunk.result_id, version, chunk.index, chunk.count, sha256, data)
    uow.tally.chunks += 1
    if await uow.artifacts.chunks_present(chunk.result_id, version, sha256, chunk.count) < chunk.count:
        return []
    artifact = b"".join(await uow.artifacts.chunk_data(chunk.result_id, version, sha256))
    actual = sha256_of(artifact)
    if actual != sha256:
        await uow.artifacts.discard_chunks(chunk.result_id, version)
        log.error(
            "artifact of result %s (version %s) dropped: its %s chunks (%s bytes) hash to sha256 %s, "
            "the trainer announced %s",
            chunk.result_id,
            version,
            chunk.count,
            len(artifact),
            actual,
            sha256,
        )
        uow.tally.corrupt.append(chunk.result_id)
        if chunk.version is not None:
            return []
        error = (
            f"the trained model arrived corrupted (its {chunk.count} chunks do not match their checksum); train again"
        )
        return [ArtifactRejected(payload=RejectedArtifact(result_id=chunk.result_id, error=error))]
    return await store_if_whole(uow, chunk.result_id, version, sha256, artifact)


async def record_version_published(event: ModelVersionPublished, uow: MetricsUnitOfWork) -> list[Envelope]:
    """A trainer's new version: stored at once if its chunks are all here, else announced until they are."""
    announced = event.payload
    await require_result(uow, announced.result_id)
    sha256 = announced.sha256.lower()
    if await uow.artifacts.stored_sha256(announced.result_id, announced.version) == sha256:
        return []
    await uow.artifacts.announce(announced.model_copy(update={"metrics": finite(announced.metrics)}))
    return await store_if_whole(uow, announced.result_id, announced.version, sha256)


async def record_window(event: WindowCompleted, uow: MetricsUnitOfWork) -> list[Envelope]:
    """One window of an incremental training (its prequential, train and validation metrics)."""
    window = event.payload
    await require_result(uow, window.result_id)
    clean = window.model_copy(
        update={"prequential": finite(window.prequential), "train": finite(window.train), "val": finite(window.val)}
    )
    if await uow.metrics.upsert_window(clean):
        uow.tally.windows += 1
    return []


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
ROUTER.event(ModelVersionPublished, record_version_published)
ROUTER.event(WindowCompleted, record_window)
