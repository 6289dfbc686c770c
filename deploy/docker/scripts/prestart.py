"""Steps before the services start (in the service image as /opt/kafkaml/prestart.py).

    python prestart.py migrate   # schema to head, then the read-only roles of the API and Grafana
    python prestart.py wait      # waits until the schema is at head (init containers)

``migrate`` reads ``KAFKAML_DATABASE_URL`` (the owner), ``KAFKAML_API_DATABASE_URL``
(the API's read-only role: its user and password are created or updated) and
``KAFKAML_GRAFANA_DB_USER`` / ``KAFKAML_GRAFANA_DB_PASSWORD`` (Grafana's). All
of it is idempotent. ``wait`` reads the owner URL, else the API's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from urllib.parse import unquote, urlsplit

import asyncpg
from alembic.script import ScriptDirectory

from shared.db.migrate import alembic_config, upgrade
from shared.db.roles import ensure_readonly_role, plain_url

log = logging.getLogger("kafkaml.prestart")


def migrate() -> None:
    owner = os.environ["KAFKAML_DATABASE_URL"]
    upgrade(owner)
    log.info("database schema is at head")
    api = os.environ.get("KAFKAML_API_DATABASE_URL")
    if api:
        parts = urlsplit(api)
        if not parts.username or not parts.password:
            raise SystemExit("KAFKAML_API_DATABASE_URL needs a user and a password")
        asyncio.run(ensure_readonly_role(owner, unquote(parts.username), unquote(parts.password)))
        log.info("read-only role %s ready", unquote(parts.username))
    grafana_password = os.environ.get("KAFKAML_GRAFANA_DB_PASSWORD")
    if grafana_password:
        role = os.environ.get("KAFKAML_GRAFANA_DB_USER", "kafkaml_grafana")
        asyncio.run(ensure_readonly_role(owner, role, grafana_password))
        log.info("read-only role %s ready", role)


async def _revision(url: str) -> str | None:
    connection = await asyncpg.connect(plain_url(url), timeout=5)
    try:
        value = await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    return str(value) if value else None


def wait(timeout_s: float) -> None:
    url = os.environ.get("KAFKAML_DATABASE_URL") or os.environ["KAFKAML_API_DATABASE_URL"]
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            current = asyncio.run(_revision(url))
        except (OSError, asyncpg.PostgresError) as exc:
            current, why = None, f"{type(exc).__name__}: {exc}"
        else:
            why = f"schema at {current}, waiting for {head}"
        if current == head:
            log.info("database schema is at head (%s)", head)
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the database schema did not reach {head} in {timeout_s:.0f} s ({why})")
        log.info("%s; retrying", why)
        time.sleep(3)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="prestart.py")
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("migrate", help="schema to head, read-only roles")
    waiting = sub.add_parser("wait", help="until the schema is at head")
    waiting.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.step == "migrate":
        migrate()
    else:
        wait(args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
