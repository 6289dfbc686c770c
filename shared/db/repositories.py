"""Repositories: they read and flush; the boundary (one message, one request) commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import CommandOutcome, Configuration, ConfigurationModel, Model, ProcessedMessage


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

    async def list(self) -> Sequence[Model]:
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

    async def list(self) -> Sequence[Configuration]:
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
        # Deployments arrive with the training issue; until then nothing uses a configuration.
        return []


class ProcessedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, consumer: str, message_id: uuid.UUID) -> list[dict[str, Any]] | None:
        row = await self.session.get(ProcessedMessage, (consumer, message_id))
        return None if row is None else list(row.published)

    async def add(self, consumer: str, message_id: uuid.UUID, published: list[dict[str, Any]]) -> None:
        self.session.add(ProcessedMessage(consumer=consumer, message_id=message_id, published=published))
        await self.session.flush()


class OutcomeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, command_id: uuid.UUID, outcome_type: str, event: dict[str, Any]) -> None:
        statement = insert(CommandOutcome).values(command_id=command_id, outcome_type=outcome_type, event=event)
        await self.session.execute(statement.on_conflict_do_nothing(index_elements=["command_id"]))

    async def get(self, command_id: uuid.UUID) -> CommandOutcome | None:
        return await self.session.get(CommandOutcome, command_id)
