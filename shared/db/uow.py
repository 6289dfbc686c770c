"""The unit of work: one transaction per message (or request), repositories inside it."""

from __future__ import annotations

from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.repositories import (
    ConfigurationRepository,
    DatasourceRepository,
    DeploymentRepository,
    InferenceRepository,
    ModelRepository,
    OutcomeRepository,
    ProcessedRepository,
    TrainingRepository,
    VersionRepository,
)


class UnitOfWork(Protocol):
    models: ModelRepository
    configurations: ConfigurationRepository
    deployments: DeploymentRepository
    datasources: DatasourceRepository
    inferences: InferenceRepository
    training: TrainingRepository
    processed: ProcessedRepository
    outcomes: OutcomeRepository
    versions: VersionRepository

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class SqlUnitOfWork:
    """Leaving the block without ``commit()`` rolls back."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self.models = ModelRepository(self.session)
        self.configurations = ConfigurationRepository(self.session)
        self.deployments = DeploymentRepository(self.session)
        self.datasources = DatasourceRepository(self.session)
        self.inferences = InferenceRepository(self.session)
        self.training = TrainingRepository(self.session)
        self.processed = ProcessedRepository(self.session)
        self.outcomes = OutcomeRepository(self.session)
        self.versions = VersionRepository(self.session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.rollback()
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()
