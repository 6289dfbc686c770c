"""The tables the code declares are the tables the migrations create (no migration is missing)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from shared.db.engine import make_engine
from shared.db.tables import Base

pytestmark = pytest.mark.integration


def differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrated_schema_matches_the_tables(database: str) -> None:
    engine = make_engine(database, pool_size=1)
    async with engine.connect() as connection:
        found = await connection.run_sync(differences)
    await engine.dispose()
    # alembic_version is the migrations' own table, not one of ours.
    assert [d for d in found if not (d[0] == "remove_table" and d[1].name == "alembic_version")] == []
