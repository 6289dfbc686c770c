"""Reading a result's model versions and windows: the orchestrator serves them, the API lists them.

Only the metrics service writes these tables (``ArtifactRepository``); every reader of a
model's bytes goes through here, so "the model of a result" means one thing: its newest
stored version, unless a version is named.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from shared.db.tables import ModelVersionRow, WindowMetricRow


class VersionRepository:
    """Versions by (result id, version number); flushes nothing (read only)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, result_id: int, version: int | None = None, *, data: bool = True) -> ModelVersionRow | None:
        """Version ``version`` of the result (None: its newest), with its bytes unless ``data`` is False."""
        statement = select(ModelVersionRow).where(ModelVersionRow.result_id == result_id)
        if version is not None:
            statement = statement.where(ModelVersionRow.version == version)
        if not data:
            statement = statement.options(defer(ModelVersionRow.data))
        row: ModelVersionRow | None = await self.session.scalar(
            statement.order_by(ModelVersionRow.version.desc()).limit(1)
        )
        return row

    async def of_result(self, result_id: int) -> Sequence[ModelVersionRow]:
        """Every stored version of the result, oldest first, without their bytes."""
        statement = (
            select(ModelVersionRow)
            .where(ModelVersionRow.result_id == result_id)
            .options(defer(ModelVersionRow.data))
            .order_by(ModelVersionRow.version)
        )
        return (await self.session.scalars(statement)).all()

    async def newest(self, result_ids: Sequence[int]) -> dict[int, int]:
        """Result id → its newest stored version number, for those of ``result_ids`` that have one."""
        rows = await self.session.execute(
            select(ModelVersionRow.result_id, func.max(ModelVersionRow.version))
            .where(ModelVersionRow.result_id.in_(result_ids))
            .group_by(ModelVersionRow.result_id)
        )
        return {result_id: version for result_id, version in rows.tuples()}

    async def windows(self, result_id: int) -> Sequence[WindowMetricRow]:
        statement = (
            select(WindowMetricRow).where(WindowMetricRow.result_id == result_id).order_by(WindowMetricRow.window)
        )
        return (await self.session.scalars(statement)).all()
