"""What keeps user code from the stack's secrets, checked on the real thing: PostgreSQL's
password authentication, and the kernel's refusal of another uid's ``/proc/<pid>/environ``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from shared.db.roles import ensure_readonly_role, plain_url
from shared.settings import Settings
from shared.stack.postgres import PASSWORD_FILE, EmbeddedPostgres
from shared.stack.sandboxuser import sandbox_identity

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def without_password(url: str, user: str) -> str:
    scheme, rest = plain_url(url).split("://", 1)
    return f"{scheme}://{user}@{rest.split('@', 1)[1]}"


async def test_postgres_trusts_no_connection_every_role_needs_its_password(
    postgres: EmbeddedPostgres, database: str, stack_home: Path
) -> None:
    hba = (postgres.pgdata / "pg_hba.conf").read_text()
    assert "trust" not in hba and "scram-sha-256" in hba
    assert stat.S_IMODE((stack_home / PASSWORD_FILE).stat().st_mode) == 0o600
    role, password = f"t_ro_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    readonly_url = await ensure_readonly_role(database, role, password)

    for user in ("postgres", role):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(without_password(database, user))
    # The read-only role, with its password, reads and cannot write.
    connection = await asyncpg.connect(readonly_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM models") == 0
        with pytest.raises(asyncpg.PostgresError):
            await connection.execute("DELETE FROM models")
    finally:
        await connection.close()
    owner = await asyncpg.connect(plain_url(database))
    try:
        assert await owner.fetchval("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = $1", role)
        await owner.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    finally:
        await owner.close()


READ_ENVIRON = """
import sys
try:
    data = open(f"/proc/{sys.argv[1]}/environ", "rb").read()
except OSError as exc:
    print(type(exc).__name__)
else:
    print("READ", b"KAFKAML_TEST_SECRET=" in data)
"""


@as_root
def test_another_uid_cannot_read_a_process_environment() -> None:
    """What the sandbox user relies on (no hidepid needed): the kernel refuses another uid's environ."""
    sandbox = sandbox_identity(Settings())  # as root: kafkaml-sandbox, able to run this Python
    assert sandbox is not None
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "KAFKAML_TEST_SECRET": "x" * 20}
    )
    try:

        def read_as(user: int | None, group: int | None) -> str:
            done = subprocess.run(
                [sys.executable, "-c", READ_ENVIRON, str(holder.pid)],
                user=user, group=group, extra_groups=[] if user else None,
                capture_output=True, text=True, check=True, cwd="/",
            )  # fmt: skip
            return done.stdout.strip()

        assert read_as(None, None) == "READ True"  # the control: the same uid reads it
        assert read_as(sandbox.uid, sandbox.gid) == "PermissionError"
    finally:
        holder.kill()
        holder.wait()
