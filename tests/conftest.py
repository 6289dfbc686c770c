"""Fixtures shared by the integration and end-to-end tiers.

One real broker (Tansu) and one real PostgreSQL are started per test session
from the packages the project declares; each test gets its own database and
its own topic prefix, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from shared.db.migrate import upgrade
from shared.db.roles import plain_url
from shared.events.signing import VALIDATOR, derive
from shared.settings import Settings
from shared.stack.broker import Broker, start_broker
from shared.stack.postgres import EmbeddedPostgres, start_postgres

REPO = Path(__file__).resolve().parents[1]
# The bus key of the tests' services (every message they read must be signed with it).
BUS_KEY = "test-bus-key"

# The browser fixtures (`browser`, `page`) for any test that drives pages.
pytest_plugins = ("tests.web",)


@pytest.fixture(scope="session")
def stack_home() -> Iterator[Path]:
    # Short: PostgreSQL's unix socket path must stay under ~100 characters.
    home = Path(tempfile.mkdtemp(prefix="kml-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(stack_home: Path) -> Iterator[Broker]:
    with start_broker(stack_home) as running:
        yield running


@pytest.fixture(scope="session")
def postgres(stack_home: Path) -> Iterator[EmbeddedPostgres]:
    with start_postgres(stack_home) as running:
        yield running


def database_url(server_url: str, name: str) -> str:
    head, _, query = server_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
async def database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh database with the project's schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(postgres.url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(postgres.url, name)
    await asyncio.to_thread(upgrade, url)
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def settings(broker: Broker, database: str, stack_home: Path) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        home=stack_home,
        bootstrap_servers=broker.bootstrap_servers,
        database_url=database,
        topic_prefix=prefix,
        control_topic=f"{prefix}.control",
        api_token="test-token",
        bus_key=BUS_KEY,
    )


def service_env(settings: Settings, *, database: bool) -> dict[str, str]:
    """The environment a service process gets: the database URL and the bus key only where it may
    have them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKAML_")}
    env.update(
        KAFKAML_BOOTSTRAP_SERVERS=settings.brokers,
        KAFKAML_TOPIC_PREFIX=settings.topic_prefix,
        KAFKAML_CONTROL_TOPIC=settings.control_topic,
        KAFKAML_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if database:
        env["KAFKAML_DATABASE_URL"] = settings.db_url
        env["KAFKAML_BUS_KEY"] = settings.bus_key or BUS_KEY
    else:  # a worker never sees the bus key; the validator gets its own key, as `kafkaml up` gives it
        env["KAFKAML_VALIDATOR_KEY"] = derive((settings.bus_key or BUS_KEY).encode(), VALIDATOR).hex()
    return env


@pytest.fixture
def run_service(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts ``python -m MODULE`` as a real process; kills whatever is left at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(module: str, env: dict[str, str], name: str | None = None) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name or module}-{len(started)}.log", "wb")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_processes(home: Path) -> list[psutil.Process]:
    """Every process whose command line or working files point into ``home``."""
    found = []
    for process in psutil.process_iter(["cmdline", "pid"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(home) in cmdline and process.pid != os.getpid():
            found.append(process)
    return found
