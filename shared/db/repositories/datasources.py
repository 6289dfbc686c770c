"""The control logger's repository: data sources, one per control message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from shared.db.repositories.base import RepositoryBase
from shared.db.tables import Datasource


class DatasourceRepository(RepositoryBase[Datasource]):
    table = Datasource

    async def at(self, control_topic: str, partition: int, offset: int, timestamp: int = -1) -> Datasource | None:
        """The data source recorded from the control message at this position (and time)."""
        return await self.session.scalar(
            select(Datasource).where(
                Datasource.control_topic == control_topic,
                Datasource.partition == partition,
                Datasource.offset == offset,
                Datasource.record_timestamp == timestamp,
            )
        )

    async def of_deployment(self, deployment_id: int) -> Sequence[Datasource]:
        return (await self.session.scalars(select(Datasource).where(Datasource.deployment_id == deployment_id))).all()

    async def mark_lost(self, topics: Callable[[str], Awaitable[int | None]]) -> list[Datasource]:
        """Marks the data sources whose topics ``topics`` (topic → partitions, None when missing)
        no longer knows; returns those newly marked."""
        lost: list[Datasource] = []
        for row in await self.session.scalars(select(Datasource).where(Datasource.lost.is_(None))):
            for topic in sorted({part.split(":")[0] for part in row.topic.split(",")}):
                if await topics(topic) is None:
                    row.lost = (
                        f"its topic {topic!r} no longer exists on the broker (an embedded broker keeps "
                        "topics in memory: `kafkaml down` lost them); send the data again"
                    )
                    lost.append(row)
                    break
        await self.session.flush()
        return lost

    async def record(self, datasource: Datasource) -> Datasource:
        """Inserts ``datasource`` (a new, unsaved row with every column set) unless a row exists for
        the same control message (position and timestamp); returns the stored row, new or existing."""
        values: dict[str, Any] = {
            column.key: getattr(datasource, column.key)
            for column in Datasource.__table__.columns
            if column.key not in ("id", "created_at")
        }
        statement = (
            insert(Datasource)
            .values(**values)
            .on_conflict_do_nothing(constraint="datasources_control_record")
            .returning(Datasource)
        )
        inserted = (await self.session.scalars(statement)).first()
        if inserted is not None:
            return inserted
        existing = await self.at(
            values["control_topic"], values["partition"], values["offset"], values["record_timestamp"]
        )
        if existing is None:  # pragma: no cover - the conflict proves the row exists
            raise RuntimeError("a data source row conflicted but cannot be found")
        return existing
