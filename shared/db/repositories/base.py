"""The one generic repository: get, list, add, delete and find-by-command for a table.

Domain repositories subclass ``RepositoryBase[Row]``, name their table, and add only
their own queries. A repository flushes (so ids and constraint errors appear at once)
but never commits: the unit of work around one message or request owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, delete, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import Base

Row = TypeVar("Row", bound=Base)
Key = int | uuid.UUID


class RepositoryBase(Generic[Row]):
    """Rows of ``table``, a table with a one-column primary key."""

    table: type[Row]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("table")
        if table is not None and len(inspect(table).primary_key) != 1:
            raise TypeError(f"{cls.__name__}: {table.__name__} has a composite primary key")

    @property
    def _key(self) -> ColumnElement[Any]:
        return inspect(self.table).primary_key[0]

    async def get(self, id: Key, *, for_update: bool = False) -> Row | None:
        """The row, or None; ``for_update`` locks it until the transaction ends (SELECT … FOR UPDATE)."""
        return await self.session.get(self.table, id, with_for_update=True if for_update else None)

    async def all(self) -> Sequence[Row]:
        """Every row, ordered by primary key."""
        return (await self.session.scalars(select(self.table).order_by(self._key))).all()

    async def add(self, row: Row) -> Row:
        """Inserts ``row`` (flushed: its id and server defaults are set on return)."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def delete(self, id: Key) -> None:
        await self.session.execute(delete(self.table).where(self._key == id))

    async def by_command(self, command_id: uuid.UUID) -> Row | None:
        """The row a command created (tables with a ``command_id`` column): how a redelivery is recognised."""
        column = self.table.__table__.c.command_id
        return await self.session.scalar(select(self.table).where(column == command_id))
