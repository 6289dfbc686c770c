"""The control logger's unit of work: one transaction per control message.

The catalog's ``SqlUnitOfWork`` (``processed`` and ``outcomes`` included, though
control messages carry no id: their place on the control topic keys them) plus
the data source repository's writing half.
"""

from __future__ import annotations

from typing import Protocol, Self

from shared.db.datasource_repository import DatasourceRecorder
from shared.db.uow import SqlUnitOfWork


class ControlLoggerUnitOfWork(Protocol):
    """What the control logger's handler needs (fakes implement it in tests)."""

    datasources: DatasourceRecorder

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class SqlControlLoggerUnitOfWork(SqlUnitOfWork):
    """Leaving the block without ``commit()`` rolls back (as ``SqlUnitOfWork``)."""

    datasources: DatasourceRecorder  # the writing subclass of the shared repository

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.datasources = DatasourceRecorder(self.session)
        return self
