"""The API's read-only role: PostgreSQL itself refuses the API's writes.

Its password is stored as a SCRAM-SHA-256 verifier, which is what the embedded PostgreSQL's
``pg_hba.conf`` asks of every role (``shared.stack.postgres``): without the password no local
process, user code included, logs in as this role or any other.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from shared.db.engine import async_url

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def plain_url(url: str) -> str:
    """The ``postgresql://`` form asyncpg itself takes."""
    return "postgresql://" + async_url(url).split("://", 1)[1]


def url_for_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(role)}:{quote(password)}@{host}"))


async def ensure_readonly_role(database_url: str, role: str, password: str) -> str:
    """Creates (or updates) ``role`` with SELECT on every table, now and later, and no
    write privilege; sessions default to read-only transactions as a second guard.
    Returns the URL the API connects with."""
    if not _IDENTIFIER.match(role):
        raise ValueError(f"invalid role name {role!r}")
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        # DDL takes no bind parameters; the role is checked above, the password quoted by PostgreSQL.
        await connection.execute("SET password_encryption = 'scram-sha-256'")
        quoted = await connection.fetchval("SELECT quote_literal($1)", password)
        await connection.execute(f"{verb} ROLE {role} LOGIN PASSWORD {quoted}")
        database = await connection.fetchval("SELECT current_database()")
        owner = await connection.fetchval("SELECT current_user")
        await connection.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
        await connection.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        await connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        await connection.execute(
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public GRANT SELECT ON TABLES TO {role}'
        )
        await connection.execute(f"ALTER ROLE {role} SET default_transaction_read_only = on")
    finally:
        await connection.close()
    return url_for_role(plain_url(database_url), role, password)
