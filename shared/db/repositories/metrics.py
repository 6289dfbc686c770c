"""The metrics service's repositories: training curves, final metrics, statistics, artifacts.

Every write is an upsert on the table's key, so applying an event twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from shared.db.repositories.base import RepositoryBase
from shared.db.tables import (
    ArtifactPart,
    EpochMetric,
    FinalMetrics,
    Inference,
    InferenceStat,
    ModelVersionRow,
    TrainingProgressRow,
    TrainingResult,
    VersionAnnouncement,
    WindowMetricRow,
)
from shared.events.inference import Stats
from shared.events.versions import ModelVersion, WindowMetrics


class MetricsRepository(RepositoryBase[FinalMetrics]):
    """Final metrics by result id, plus the epoch curves and inference statistics."""

    table = FinalMetrics

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        # Results seen in this transaction: a batch of 200 epochs of one result asks once.
        self._known_results: set[int] = set()

    async def result_exists(self, result_id: int) -> bool:
        if result_id in self._known_results:
            return True
        found = await self.session.scalar(select(TrainingResult.id).where(TrainingResult.id == result_id))
        if found is not None:
            self._known_results.add(result_id)
        return found is not None

    async def upsert_epoch(
        self, result_id: int, epoch: int, train: Mapping[str, float | None], val: Mapping[str, float | None]
    ) -> None:
        # DO UPDATE, not DO NOTHING: a retried job reports its epochs again and the newer curve wins.
        statement = insert(EpochMetric).values(result_id=result_id, epoch=epoch, train=dict(train), val=dict(val))
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[EpochMetric.result_id, EpochMetric.epoch],
                set_={"train": statement.excluded.train, "val": statement.excluded.val},
            )
        )

    async def upsert_progress(
        self, result_id: int, phase: str, detail: str, done: int | None, total: int | None
    ) -> None:
        """The newest phase report of a result replaces the one before."""
        values = {"phase": phase, "detail": detail, "done": done, "total": total}
        statement = insert(TrainingProgressRow).values(result_id=result_id, **values)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[TrainingProgressRow.result_id], set_={**values, "updated_at": func.now()}
            )
        )

    async def epochs(self, result_id: int) -> Sequence[EpochMetric]:
        return (
            await self.session.scalars(
                select(EpochMetric).where(EpochMetric.result_id == result_id).order_by(EpochMetric.epoch)
            )
        ).all()

    async def upsert_final(self, final: FinalMetrics) -> None:
        values = {
            "result_id": final.result_id,
            "test_metrics": final.test_metrics,
            "confusion_matrix": final.confusion_matrix,
            "training_time": final.training_time,
            "samples": final.samples,
            "artifact_sha256": final.artifact_sha256,
            "artifact_format": final.artifact_format,
        }
        statement = insert(FinalMetrics).values(**values)
        # The latest attempt's metrics win, so that they describe the artifact that is kept.
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[FinalMetrics.result_id],
                set_={k: getattr(statement.excluded, k) for k in values if k != "result_id"},
            )
        )

    async def final(self, result_id: int) -> FinalMetrics | None:
        return await self.get(result_id)

    async def upsert_window(self, window: WindowMetrics) -> bool:
        """One window's row; False when it was already stored (a window is reported once: a
        restarted trainer resumes after its last window, so a repeat is a redelivery)."""
        statement = insert(WindowMetricRow).values(
            result_id=window.result_id,
            window=window.window,
            samples=window.samples,
            prequential=dict(window.prequential),
            train=dict(window.train),
            val=dict(window.val),
            topic=window.topic,
            offsets=[span.model_dump() for span in window.offsets],
            version=window.version,
        )
        stored = await self.session.execute(
            statement.on_conflict_do_nothing(
                index_elements=[WindowMetricRow.result_id, WindowMetricRow.window]
            ).returning(WindowMetricRow.window)
        )
        return stored.first() is not None

    async def inference_exists(self, inference_id: int) -> bool:
        found = await self.session.scalar(select(Inference.id).where(Inference.id == inference_id))
        return found is not None

    async def add_inference_stats(self, event_id: uuid.UUID, stats: Stats) -> None:
        values = stats.model_dump(exclude={"inference_id", "replica", "window_s", "predicted"})
        statement = insert(InferenceStat).values(
            event_id=event_id,
            inference_id=stats.inference_id,
            replica=stats.replica,
            window_s=stats.window_s,
            predicted=stats.predicted,
            **values,
        )
        await self.session.execute(statement.on_conflict_do_nothing(index_elements=[InferenceStat.event_id]))


class ArtifactRepository:
    """Chunks wait in ``artifact_chunks`` (by result and version) until they are whole and
    announced; then the version moves, bytes and metrics, to ``model_versions``. Flushes, never
    commits (the tables have composite keys, so this is no ``RepositoryBase``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def stored_sha256(self, result_id: int, version: int) -> str | None:
        return await self.session.scalar(
            select(ModelVersionRow.sha256).where(
                ModelVersionRow.result_id == result_id, ModelVersionRow.version == version
            )
        )

    async def version_with_sha256(self, result_id: int, sha256: str) -> ModelVersionRow | None:
        """The newest stored version of the result whose bytes hash to ``sha256`` (without them)."""
        row: ModelVersionRow | None = await self.session.scalar(
            select(ModelVersionRow)
            .where(ModelVersionRow.result_id == result_id, ModelVersionRow.sha256 == sha256)
            .options(defer(ModelVersionRow.data))
            .order_by(ModelVersionRow.version.desc())
            .limit(1)
        )
        return row

    async def put_chunk(self, result_id: int, version: int, index: int, count: int, sha256: str, data: bytes) -> None:
        statement = insert(ArtifactPart).values(
            result_id=result_id, version=version, index=index, count=count, sha256=sha256, data=data
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[ArtifactPart.result_id, ArtifactPart.version, ArtifactPart.index],
                set_={
                    "count": statement.excluded.count,
                    "sha256": statement.excluded.sha256,
                    "data": statement.excluded.data,
                },
            )
        )

    async def discard_chunks(self, result_id: int, version: int, *, keep_sha256: str | None = None) -> None:
        """Deletes the version's waiting chunks (but those of ``keep_sha256``, when given)."""
        statement = delete(ArtifactPart).where(ArtifactPart.result_id == result_id, ArtifactPart.version == version)
        if keep_sha256 is not None:
            statement = statement.where(ArtifactPart.sha256 != keep_sha256)
        await self.session.execute(statement)

    async def chunks_present(self, result_id: int, version: int, sha256: str, count: int | None = None) -> int:
        """How many chunks of that artifact are here (of ``count``; None: the count they announce)."""
        conditions = [ArtifactPart.result_id == result_id, ArtifactPart.version == version]
        conditions.append(ArtifactPart.sha256 == sha256)
        if count is not None:
            conditions += [ArtifactPart.count == count, ArtifactPart.index < count]
        else:
            conditions.append(ArtifactPart.index < ArtifactPart.count)
        return int(await self.session.scalar(select(func.count()).where(*conditions)) or 0)

    async def chunk_count(self, result_id: int, version: int, sha256: str) -> int | None:
        """The count the waiting chunks of that artifact announce, or None when none waits."""
        found: int | None = await self.session.scalar(
            select(ArtifactPart.count)
            .where(ArtifactPart.result_id == result_id, ArtifactPart.version == version, ArtifactPart.sha256 == sha256)
            .limit(1)
        )
        return found

    async def chunk_data(self, result_id: int, version: int, sha256: str) -> list[bytes]:
        """The chunks' bytes in index order."""
        rows = await self.session.scalars(
            select(ArtifactPart.data)
            .where(ArtifactPart.result_id == result_id, ArtifactPart.version == version, ArtifactPart.sha256 == sha256)
            .order_by(ArtifactPart.index)
        )
        return list(rows)

    async def announce(self, announced: ModelVersion) -> None:
        """Keeps a ``ModelVersionPublished`` until its chunks are whole (a newer one replaces it)."""
        values = {
            "sha256": announced.sha256.lower(),
            "size": announced.size,
            "format": announced.format,
            "metrics": dict(announced.metrics),
            "window": announced.window,
        }
        statement = insert(VersionAnnouncement).values(
            result_id=announced.result_id, version=announced.version, **values
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[VersionAnnouncement.result_id, VersionAnnouncement.version],
                set_={**values, "received_at": func.now()},
            )
        )

    async def announcement(self, result_id: int, version: int) -> VersionAnnouncement | None:
        return await self.session.get(VersionAnnouncement, (result_id, version))

    async def forget_announcement(self, result_id: int, version: int) -> None:
        await self.session.execute(
            delete(VersionAnnouncement).where(
                VersionAnnouncement.result_id == result_id, VersionAnnouncement.version == version
            )
        )

    async def store(self, version: ModelVersion, data: bytes) -> None:
        """Stores a whole, checked version; a newer attempt of the same version replaces it."""
        values = {
            "sha256": version.sha256.lower(),
            "size": len(data),
            "format": version.format,
            "metrics": dict(version.metrics),
            "window": version.window,
            "data": data,
        }
        statement = insert(ModelVersionRow).values(result_id=version.result_id, version=version.version, **values)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[ModelVersionRow.result_id, ModelVersionRow.version],
                set_={**values, "created_at": func.now()},
            )
        )
