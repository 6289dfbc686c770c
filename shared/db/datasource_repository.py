"""The control logger's repository: one data source row per control message.

Upstream control messages carry no id, so a row is keyed by the message's place
on the control topic (``control_topic``, ``partition``, ``offset``, unique):
a redelivered control message finds its row and adds none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import Datasource


class DatasourceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, datasource: Datasource) -> Datasource:
        """Inserts ``datasource`` (a new, unsaved row with every column set) unless a row exists at
        the same control position; returns the stored row."""
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

    async def at(self, control_topic: str, partition: int, offset: int) -> Datasource | None:
        return await self.session.scalar(
            select(Datasource).where(
                Datasource.control_topic == control_topic,
                Datasource.partition == partition,
                Datasource.offset == offset,
            )
        )

    async def get(self, datasource_id: int) -> Datasource | None:
        return await self.session.get(Datasource, datasource_id)

    async def for_deployment(self, deployment_id: int) -> Sequence[Datasource]:
        return (
            await self.session.scalars(
                select(Datasource).where(Datasource.deployment_id == deployment_id).order_by(Datasource.id)
            )
        ).all()
