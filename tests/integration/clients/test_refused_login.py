"""A broker that requires SASL/SCRAM and a wrong password: every client of the project stops
saying that Kafka refused the login, for which user and mechanism, and which settings to check,
without the password, instead of retrying a broker it takes for absent: the API, a trainer, an
inferencer, `kafkaml send`, a data-source sink, and the shared producer, consumer and admin."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.datasources.raw import AsyncRawSink
from shared.kafka import Producer, create_topics, make_consumer
from shared.kafka_security import KafkaLoginRefused, KafkaSecurity
from shared.settings import Settings
from shared.stack.broker import Broker, start_broker
from shared.stack.broker_front import User, write_users
from tests.conftest import REPO, free_port
from tests.unit.fakes import job_spec, serve_spec

pytestmark = pytest.mark.integration

RIGHT = "the-Right-password-7"
WRONG = "a-Wrong-password-9"
SAID = "refused the login for user kafkaml (SASL_PLAINTEXT (SCRAM-SHA-256 as kafkaml))"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    home = tmp_path_factory.mktemp("sasl-broker")
    users = home / "users.json"
    write_users(users, [User("kafkaml", RIGHT, "SCRAM-SHA-256")])
    broker = start_broker(home, sasl_users=users)
    try:
        yield broker
    finally:
        broker.stop()


def wrong_login(broker: Broker) -> KafkaSecurity:
    return dataclasses.replace(broker.security, sasl_password=WRONG)


def wrong_settings(broker: Broker) -> Settings:
    return Settings(bootstrap_servers=broker.bootstrap_servers, **wrong_login(broker).settings_update())


def wrong_env(broker: Broker, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),
        "KAFKAML_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKAML_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKAML_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKAML_SASL_USERNAME": "kafkaml",
        "KAFKAML_SASL_PASSWORD": WRONG,
        **extra,
    }


def assert_said_clearly(text: str) -> None:
    assert SAID in text and "KAFKAML_SASL_PASSWORD" in text, text[-3000:]
    assert WRONG not in text and RIGHT not in text


def run(argv: list[str], env: dict[str, str], stdin: str = "", timeout_s: float = 90) -> tuple[int, str]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=timeout_s)
    assert time.monotonic() - started < 60, "it retried instead of stopping"
    return done.returncode, done.stdout + done.stderr


async def test_the_shared_clients_raise_a_refused_login(secured: Broker) -> None:
    settings = wrong_settings(secured)
    producer = Producer(settings)
    with pytest.raises(KafkaLoginRefused) as refused:
        await producer.start()
    assert_said_clearly(str(refused.value))
    consumer = make_consumer(settings, "kafkaml.events", group_id=None)
    try:
        with pytest.raises(KafkaLoginRefused):
            await consumer.start()
    finally:
        await consumer.stop()
    with pytest.raises(KafkaLoginRefused):
        await create_topics(settings, [])
    # The right password: the same clients start.
    right = Producer(settings.model_copy(update=dataclasses.replace(secured.security).settings_update()))
    await right.start()
    await right.stop()


async def test_a_sink_raises_a_refused_login(secured: Broker) -> None:
    sink = AsyncRawSink(secured.bootstrap_servers, "refused-data", 1, security=wrong_login(secured))
    with pytest.raises(KafkaLoginRefused) as refused:
        await sink.start()
    assert_said_clearly(str(refused.value))


def test_kafkaml_send_stops_saying_why(secured: Broker, tmp_path: Path) -> None:
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((4, 2), dtype=np.float32), y=np.zeros(4, dtype=np.float32))
    argv = [sys.executable, "-m", "shared.cli", "send", str(data), "--deployment-id", "1", "--topic", "refused"]
    code, output = run(argv, wrong_env(secured, KAFKAML_HOME=str(tmp_path)))
    assert code == 1
    assert_said_clearly(output)


def test_the_api_stops_saying_why(secured: Broker) -> None:
    env = wrong_env(
        secured,
        KAFKAML_API_PORT=str(free_port()),
        KAFKAML_API_TOKEN="token",
        KAFKAML_API_DATABASE_URL="postgresql://nobody:nothing@127.0.0.1:1/none",
    )
    code, output = run([sys.executable, "-m", "services.api"], env)
    assert code == 2, output
    assert "Traceback" not in output, output  # said once, as one line, not after a failed start-up
    assert_said_clearly(output)


@pytest.mark.parametrize("worker", ["trainer", "inferencer"])
def test_a_worker_stops_saying_why(secured: Broker, worker: str, tmp_path: Path) -> None:
    spec = job_spec("refused-job") if worker == "trainer" else serve_spec("refused-job")
    argv = [sys.executable, "-m", f"services.{worker}", "--spec-file", "-", "--job-id", "refused-job"]
    code, output = run(argv, wrong_env(secured, HOME=str(tmp_path)), stdin=spec.model_dump_json())
    assert code == 2, output  # no retry cures wrong credentials: a launcher sees a spec-like refusal
    assert "Traceback" not in output, output
    assert_said_clearly(output)
