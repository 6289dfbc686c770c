"""The orchestrator's repositories: models, configurations, deployments, training, inferences.

The orchestrator writes through them; the API reads through the same classes on its
read-only connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select

from shared.db.repositories.base import RepositoryBase
from shared.db.tables import (
    Configuration,
    ConfigurationModel,
    Deployment,
    Inference,
    Model,
    TrainingJob,
    TrainingResult,
)
from shared.events.training import ResultStatus

ACTIVE_STATUSES: tuple[ResultStatus, ...] = ("created", "waiting_data", "training")


class ModelRepository(RepositoryBase[Model]):
    table = Model

    async def upper_links(self) -> dict[int, int | None]:
        """Every model id → its upper model id (the distributed chains)."""
        rows = await self.session.execute(select(Model.id, Model.upper_model_id))
        return {row.id: row.upper_model_id for row in rows}

    async def configurations_using(self, model_id: int) -> list[int]:
        rows = await self.session.scalars(
            select(ConfigurationModel.configuration_id).where(ConfigurationModel.model_id == model_id)
        )
        return sorted(rows)


class ConfigurationRepository(RepositoryBase[Configuration]):
    table = Configuration

    async def add(self, configuration: Configuration, model_ids: Sequence[int] = ()) -> Configuration:
        """Inserts the configuration and its links to ``model_ids``."""
        await super().add(configuration)
        self.session.add_all(ConfigurationModel(configuration_id=configuration.id, model_id=m) for m in model_ids)
        await self.session.flush()
        return configuration

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

    async def deployments_using(self, configuration_id: int) -> list[int]:
        rows = await self.session.scalars(
            select(Deployment.id).where(Deployment.configuration_id == configuration_id).order_by(Deployment.id)
        )
        return list(rows)


class DeploymentRepository(RepositoryBase[Deployment]):
    table = Deployment


class TrainingRepository(RepositoryBase[TrainingResult]):
    """Training results (one per model), and the jobs that produce them."""

    table = TrainingResult

    async def add_job(self, job: TrainingJob, results: Sequence[TrainingResult]) -> list[TrainingResult]:
        self.session.add(job)
        await self.session.flush()
        self.session.add_all(results)
        await self.session.flush()
        return list(results)

    async def job(self, job_id: uuid.UUID) -> TrainingJob | None:
        return await self.session.get(TrainingJob, job_id)

    async def result(self, result_id: int, *, for_update: bool = False) -> TrainingResult | None:
        return await self.get(result_id, for_update=for_update)

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


class InferenceRepository(RepositoryBase[Inference]):
    table = Inference

    async def active(self) -> Sequence[Inference]:
        """Inferences that should be running: what a restart launches again."""
        statement = select(Inference).where(Inference.status.in_(("starting", "running"))).order_by(Inference.id)
        return (await self.session.scalars(statement)).all()

    async def following(self, result_id: int) -> Sequence[Inference]:
        """The result's inferences that should be running and follow its newest version."""
        statement = (
            select(Inference)
            .where(
                Inference.result_id == result_id,
                Inference.follow_latest.is_(True),
                Inference.status.in_(("starting", "running")),
            )
            .order_by(Inference.id)
            .with_for_update()
        )
        return (await self.session.scalars(statement)).all()
