"""The API's role: PostgreSQL itself refuses its writes."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db.roles import ensure_readonly_role, plain_url


@pytest.mark.integration
async def test_api_role_reads_but_postgres_refuses_its_writes(database: str) -> None:
    owner = await asyncpg.connect(plain_url(database))
    await owner.execute(
        "INSERT INTO configurations (name, description, command_id) VALUES ('c', '', gen_random_uuid())"
    )
    await owner.close()

    api_url = await ensure_readonly_role(database, "kafkaml_api_test", "secret-pw")
    api = await asyncpg.connect(api_url)
    try:
        assert await api.fetchval("SELECT count(*) FROM configurations") == 1
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await api.execute(
                "INSERT INTO configurations (name, description, command_id) VALUES ('x', '', gen_random_uuid())"
            )
        # Even with the read-only default switched off, the role holds no write privilege.
        await api.execute("SET default_transaction_read_only = off")
        for statement in (
            "INSERT INTO configurations (name, description, command_id) VALUES ('x', '', gen_random_uuid())",
            "UPDATE configurations SET name = 'y'",
            "DELETE FROM configurations",
            "CREATE TABLE sneaky (id int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await api.execute(statement)
        assert await api.fetchval("SELECT name FROM configurations") == "c"
    finally:
        await api.close()
