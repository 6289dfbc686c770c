"""The control logger's writes to ``datasources``: one row per control message.

Upstream control messages carry no id, so a row is keyed by the message's place
on the control topic (``control_topic``, ``partition``, ``offset``, unique):
a redelivered control message finds its row and adds none.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert

from shared.db.repositories import DatasourceRepository
from shared.db.tables import Datasource


class DatasourceRecorder(DatasourceRepository):
    """The shared (read) repository plus ``record``, which only the control logger calls."""

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
