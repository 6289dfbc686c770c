"""Read models of the API: rows of several services' tables joined for a response."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.repositories import VersionRepository
from shared.db.tables import (
    Datasource,
    Deployment,
    EpochMetric,
    FinalMetrics,
    TrainingProgressRow,
    TrainingResult,
)
from shared.events.training import (
    DeploymentRecord,
    DistributedParams,
    IncrementalParams,
    ResultRef,
    TrainingParams,
    deployment_status,
)


class ProgressPublic(BaseModel):
    phase: str
    detail: str
    done: int | None
    total: int | None


class ResultPublic(BaseModel):
    id: int
    deployment_id: int
    model_id: int
    status: str
    train_metrics: dict[str, list[float | None]]
    val_metrics: dict[str, list[float | None]]
    test_metrics: dict[str, float | None]
    confusion_matrix: list[list[int]] | None
    training_time: float | None
    error: str | None
    datasource_id: int | None
    samples: dict[str, int] | None
    model_available: bool
    # What the trainer reported last before its epochs (starting, waiting for data, reading N samples).
    progress: ProgressPublic | None = None
    # The newest stored model version (an incremental training adds versions while it runs).
    latest_version: int | None = None


class VersionPublic(BaseModel):
    """One stored model version of a result (``GET /results/{id}/versions``)."""

    version: int
    created_at: datetime
    # The window's prequential metrics (incremental), or the test metrics (bounded).
    metrics: dict[str, float | None]
    sha256: str
    size: int
    format: str
    window: int | None


class WindowPublic(BaseModel):
    """One window of an incremental training (``GET /results/{id}/windows``)."""

    window: int
    samples: int
    prequential: dict[str, float | None]
    train: dict[str, float | None]
    val: dict[str, float | None]
    version: int | None
    created_at: datetime
    topic: str
    offsets: list[dict[str, int]]


def curves(rows: Sequence[EpochMetric], which: str) -> dict[str, list[float | None]]:
    """Per-epoch values by metric name, in epoch order."""
    found: dict[str, list[float | None]] = {}
    for row in sorted(rows, key=lambda r: r.epoch):
        for name, value in getattr(row, which).items():
            found.setdefault(name, []).append(value)
    return found


async def results(
    session: AsyncSession, *, result_id: int | None = None, deployment_id: int | None = None
) -> list[ResultPublic]:
    statement = select(TrainingResult).order_by(TrainingResult.id)
    if result_id is not None:
        statement = statement.where(TrainingResult.id == result_id)
    if deployment_id is not None:
        statement = statement.where(TrainingResult.deployment_id == deployment_id)
    rows = (await session.scalars(statement)).all()
    ids = [r.id for r in rows]
    epochs = (await session.scalars(select(EpochMetric).where(EpochMetric.result_id.in_(ids)))).all()
    finals = {
        f.result_id: f
        for f in (await session.scalars(select(FinalMetrics).where(FinalMetrics.result_id.in_(ids)))).all()
    }
    newest = await VersionRepository(session).newest(ids)
    progress = {
        p.result_id: ProgressPublic(phase=p.phase, detail=p.detail, done=p.done, total=p.total)
        for p in (
            await session.scalars(select(TrainingProgressRow).where(TrainingProgressRow.result_id.in_(ids)))
        ).all()
    }
    answer = []
    for row in rows:
        mine = [e for e in epochs if e.result_id == row.id]
        final = finals.get(row.id)
        answer.append(
            ResultPublic(
                id=row.id,
                deployment_id=row.deployment_id,
                model_id=row.model_id,
                status=row.status,
                train_metrics=curves(mine, "train"),
                val_metrics=curves(mine, "val"),
                test_metrics=final.test_metrics if final else {},
                confusion_matrix=final.confusion_matrix if final else None,
                training_time=final.training_time if final else None,
                error=row.error,
                datasource_id=await datasource_id(session, row.datasource),
                samples=final.samples if final else None,
                model_available=row.id in newest,
                progress=progress.get(row.id),
                latest_version=newest.get(row.id),
            )
        )
    return answer


async def datasource_id(session: AsyncSession, reference: dict[str, Any] | None) -> int | None:
    if not reference:
        return None
    statement = select(Datasource.id).where(
        Datasource.control_topic == reference["control_topic"],
        Datasource.partition == reference["partition"],
        Datasource.offset == reference["offset"],
    )
    if reference.get("timestamp") is not None:
        statement = statement.where(Datasource.record_timestamp == reference["timestamp"])
    # Without a timestamp (a result trained before it was kept), the newest row at that position.
    found: int | None = await session.scalar(statement.order_by(Datasource.id.desc()).limit(1))
    return found


async def deployments(session: AsyncSession, deployment_id: int | None = None) -> list[DeploymentRecord]:
    statement = select(Deployment).order_by(Deployment.id)
    if deployment_id is not None:
        statement = statement.where(Deployment.id == deployment_id)
    rows = (await session.scalars(statement)).all()
    ids = [d.id for d in rows]
    result_rows = (
        await session.scalars(
            select(TrainingResult).where(TrainingResult.deployment_id.in_(ids)).order_by(TrainingResult.id)
        )
    ).all()
    answer = []
    for row in rows:
        refs = [
            ResultRef.model_validate({"id": r.id, "model_id": r.model_id, "status": r.status})
            for r in result_rows
            if r.deployment_id == row.id
        ]
        params = TrainingParams(
            configuration_id=row.configuration_id,
            batch_size=row.batch_size,
            fit=row.fit,
            evaluate=row.evaluate,
            confusion_matrix=row.confusion_matrix,
            gpus=row.gpus,
            distributed=DistributedParams.model_validate(row.distributed) if row.distributed else None,
            incremental=IncrementalParams.model_validate(row.incremental) if row.incremental else None,
        )
        answer.append(
            DeploymentRecord(
                **params.model_dump(),
                id=row.id,
                status=deployment_status([r.status for r in refs]),
                created_at=row.created_at,
                results=refs,
            )
        )
    return answer


async def versions(session: AsyncSession, result_id: int) -> list[VersionPublic]:
    rows = await VersionRepository(session).of_result(result_id)
    return [
        VersionPublic(
            version=r.version,
            created_at=r.created_at,
            metrics=r.metrics,
            sha256=r.sha256,
            size=r.size,
            format=r.format,
            window=r.window,
        )
        for r in rows
    ]


async def windows(session: AsyncSession, result_id: int) -> list[WindowPublic]:
    rows = await VersionRepository(session).windows(result_id)
    return [
        WindowPublic(
            window=r.window,
            samples=r.samples,
            prequential=r.prequential,
            train=r.train,
            val=r.val,
            version=r.version,
            created_at=r.created_at,
            topic=r.topic,
            offsets=r.offsets,
        )
        for r in rows
    ]
