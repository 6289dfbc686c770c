"""Repositories: they read and flush; the boundary (one message, one request) commits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import (
    Artifact,
    CommandOutcome,
    Configuration,
    ConfigurationModel,
    Datasource,
    Deployment,
    FinalMetrics,
    Inference,
    Model,
    ProcessedMessage,
    TrainingJob,
    TrainingResult,
)


class ModelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, model: Model) -> Model:
        self.session.add(model)
        await self.session.flush()
        return model

    async def get(self, model_id: int) -> Model | None:
        return await self.session.get(Model, model_id)

    async def by_command(self, command_id: uuid.UUID) -> Model | None:
        return await self.session.scalar(select(Model).where(Model.command_id == command_id))

    async def all(self) -> Sequence[Model]:
        return (await self.session.scalars(select(Model).order_by(Model.id))).all()

    async def delete(self, model_id: int) -> None:
        await self.session.execute(delete(Model).where(Model.id == model_id))

    async def upper_links(self) -> dict[int, int | None]:
        """Every model id → its upper model id (the distributed chains)."""
        rows = await self.session.execute(select(Model.id, Model.upper_model_id))
        return {row.id: row.upper_model_id for row in rows}

    async def configurations_using(self, model_id: int) -> list[int]:
        rows = await self.session.scalars(
            select(ConfigurationModel.configuration_id).where(ConfigurationModel.model_id == model_id)
        )
        return sorted(rows)


class ConfigurationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, configuration: Configuration, model_ids: Sequence[int]) -> Configuration:
        self.session.add(configuration)
        await self.session.flush()
        self.session.add_all(ConfigurationModel(configuration_id=configuration.id, model_id=m) for m in model_ids)
        await self.session.flush()
        return configuration

    async def get(self, configuration_id: int) -> Configuration | None:
        return await self.session.get(Configuration, configuration_id)

    async def by_command(self, command_id: uuid.UUID) -> Configuration | None:
        return await self.session.scalar(select(Configuration).where(Configuration.command_id == command_id))

    async def all(self) -> Sequence[Configuration]:
        return (await self.session.scalars(select(Configuration).order_by(Configuration.id))).all()

    async def model_ids(self, configuration_ids: Sequence[int]) -> dict[int, list[int]]:
        result: dict[int, list[int]] = {c: [] for c in configuration_ids}
        rows = await self.session.execute(
            select(ConfigurationModel.configuration_id, ConfigurationModel.model_id)
            .where(ConfigurationModel.configuration_id.in_(configuration_ids))
            .order_by(ConfigurationModel.model_id)
        )
        for row in rows:
            result[row.configuration_id].append(row.model_id)
        return result

    async def delete(self, configuration_id: int) -> None:
        await self.session.execute(delete(Configuration).where(Configuration.id == configuration_id))

    async def deployments_using(self, configuration_id: int) -> list[int]:
        rows = await self.session.scalars(
            select(Deployment.id).where(Deployment.configuration_id == configuration_id).order_by(Deployment.id)
        )
        return list(rows)


class ProcessedRepository:
    """``processed_messages``, read and written a batch at a time (one query each way)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def seen(self, consumer: str, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Of ``message_ids``, those ``consumer`` already handled → what it published in answer."""
        if not message_ids:
            return {}
        rows = await self.session.execute(
            select(ProcessedMessage.message_id, ProcessedMessage.published).where(
                ProcessedMessage.consumer == consumer, ProcessedMessage.message_id.in_(message_ids)
            )
        )
        return {row.message_id: list(row.published) for row in rows}

    async def add_many(self, consumer: str, published: Mapping[uuid.UUID, list[dict[str, Any]]]) -> None:
        # A plain insert, not ON CONFLICT DO NOTHING: a concurrent consumer that handled one of
        # these ids makes the transaction fail (IntegrityError, retried), and the retry skips that id.
        if published:
            await self.session.execute(
                insert(ProcessedMessage),
                [{"consumer": consumer, "message_id": m, "published": p} for m, p in published.items()],
            )


class OutcomeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, command_id: uuid.UUID, outcome_type: str, event: dict[str, Any]) -> None:
        statement = insert(CommandOutcome).values(command_id=command_id, outcome_type=outcome_type, event=event)
        await self.session.execute(statement.on_conflict_do_nothing(index_elements=["command_id"]))

    async def get(self, command_id: uuid.UUID) -> CommandOutcome | None:
        return await self.session.get(CommandOutcome, command_id)


ACTIVE_STATUSES = ("created", "waiting_data", "training")


class DeploymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, deployment: Deployment) -> Deployment:
        self.session.add(deployment)
        await self.session.flush()
        return deployment

    async def get(self, deployment_id: int) -> Deployment | None:
        return await self.session.get(Deployment, deployment_id)

    async def by_command(self, command_id: uuid.UUID) -> Deployment | None:
        return await self.session.scalar(select(Deployment).where(Deployment.command_id == command_id))

    async def all(self) -> Sequence[Deployment]:
        return (await self.session.scalars(select(Deployment).order_by(Deployment.id))).all()

    async def using_configuration(self, configuration_id: int) -> list[int]:
        rows = await self.session.scalars(
            select(Deployment.id).where(Deployment.configuration_id == configuration_id).order_by(Deployment.id)
        )
        return list(rows)


class TrainingRepository:
    """Training jobs and their results (one result per model)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_job(self, job: TrainingJob, results: Sequence[TrainingResult]) -> list[TrainingResult]:
        self.session.add(job)
        await self.session.flush()
        self.session.add_all(results)
        await self.session.flush()
        return list(results)

    async def job(self, job_id: uuid.UUID) -> TrainingJob | None:
        return await self.session.get(TrainingJob, job_id)

    async def result(self, result_id: int, *, for_update: bool = False) -> TrainingResult | None:
        statement = select(TrainingResult).where(TrainingResult.id == result_id)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def results(
        self, *, deployment_ids: Sequence[int] | None = None, job_id: uuid.UUID | None = None
    ) -> Sequence[TrainingResult]:
        statement = select(TrainingResult).order_by(TrainingResult.id)
        if deployment_ids is not None:
            statement = statement.where(TrainingResult.deployment_id.in_(deployment_ids))
        if job_id is not None:
            statement = statement.where(TrainingResult.job_id == job_id)
        return (await self.session.scalars(statement)).all()

    async def active_jobs(self) -> Sequence[TrainingJob]:
        """Jobs with a result still in flight: what must be running after a restart."""
        active = select(TrainingResult.job_id).where(TrainingResult.status.in_(ACTIVE_STATUSES))
        return (await self.session.scalars(select(TrainingJob).where(TrainingJob.id.in_(active)))).all()


class DatasourceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, datasource_id: int) -> Datasource | None:
        return await self.session.get(Datasource, datasource_id)

    async def all(self) -> Sequence[Datasource]:
        return (await self.session.scalars(select(Datasource).order_by(Datasource.id))).all()

    async def at(self, control_topic: str, partition: int, offset: int) -> Datasource | None:
        """The data source recorded from the control message at this position."""
        return await self.session.scalar(
            select(Datasource).where(
                Datasource.control_topic == control_topic,
                Datasource.partition == partition,
                Datasource.offset == offset,
            )
        )

    async def record(self, datasource: Datasource) -> Datasource:
        """Inserts ``datasource`` (a new, unsaved row with every column set) unless a row exists at
        the same control position; returns the stored row, new or existing."""
        values: dict[str, Any] = {
            column.key: getattr(datasource, column.key)
            for column in Datasource.__table__.columns
            if column.key not in ("id", "created_at")
        }
        statement = (
            insert(Datasource)
            .values(**values)
            .on_conflict_do_nothing(constraint="datasources_control_position")
            .returning(Datasource)
        )
        inserted = (await self.session.scalars(statement)).first()
        if inserted is not None:
            return inserted
        existing = await self.at(values["control_topic"], values["partition"], values["offset"])
        if existing is None:  # pragma: no cover - the conflict proves the row exists
            raise RuntimeError("a data source row conflicted but cannot be found")
        return existing


class InferenceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, inference: Inference) -> Inference:
        self.session.add(inference)
        await self.session.flush()
        return inference

    async def get(self, inference_id: int, *, for_update: bool = False) -> Inference | None:
        statement = select(Inference).where(Inference.id == inference_id)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def by_command(self, command_id: uuid.UUID) -> Inference | None:
        return await self.session.scalar(select(Inference).where(Inference.command_id == command_id))

    async def all(self) -> Sequence[Inference]:
        return (await self.session.scalars(select(Inference).order_by(Inference.id))).all()

    async def active(self) -> Sequence[Inference]:
        """Inferences that should be running: what a restart launches again."""
        statement = select(Inference).where(Inference.status.in_(("starting", "running"))).order_by(Inference.id)
        return (await self.session.scalars(statement)).all()

    async def delete(self, inference_id: int) -> None:
        await self.session.execute(delete(Inference).where(Inference.id == inference_id))

    async def artifact(self, result_id: int) -> tuple[Artifact, str] | None:
        """The trained model of a result and its format, once the metrics service stored it."""
        artifact = await self.session.get(Artifact, result_id)
        final = await self.session.get(FinalMetrics, result_id)
        if artifact is None or final is None:
            return None
        return artifact, final.artifact_format
