"""Database migrations (Alembic), run by `kafkaml up` or as a pre-start step:

python -m shared.db.migrate            # upgrades $KAFKAML_DATABASE_URL to head
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.db.engine import async_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Brings the schema to ``revision``. Synchronous: call it outside a running event loop
    (or through ``asyncio.to_thread``)."""
    command.upgrade(alembic_config(database_url), revision)


def main() -> None:
    from shared.process import setup_logging
    from shared.settings import get_settings

    setup_logging("INFO")
    upgrade(get_settings().db_url)
    print("database schema is up to date")


if __name__ == "__main__":
    main()
