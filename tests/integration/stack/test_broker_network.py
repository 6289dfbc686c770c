"""Secured, the embedded broker runs in a network namespace of its own where the kernel allows:
its plain port (no TLS, no login) cannot be reached from the host, so a local process (model
code) cannot skip the relay; the relay still serves clients that log in."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaProducer

from shared.kafka_security import security_options
from shared.stack.broker import Broker, start_broker
from shared.stack.broker_front import User, write_users
from shared.stack.netns import can_isolate, is_isolated

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not can_isolate(), reason="this kernel or user may not create a network namespace"),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    home = tmp_path_factory.mktemp("isolated-broker")
    users = home / "users.json"
    write_users(users, [User("kafkaml", "a-Password-3", "SCRAM-SHA-256")])
    broker = start_broker(home, sasl_users=users)
    try:
        yield broker
    finally:
        broker.stop()


def plain_port(broker: Broker) -> int:
    argv = psutil.Process(broker.pid).cmdline()
    return int(argv[argv.index("--listener-url") + 1].rsplit(":", 1)[1])


def test_the_plain_port_is_out_of_reach_and_the_relay_serves(secured: Broker, tmp_path: Path) -> None:
    assert secured.isolated and is_isolated(secured.pid)
    assert secured.front is not None and not is_isolated(secured.front.pid)  # the relay is on the host
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", plain_port(secured)), timeout=2).close()


async def test_a_client_that_logs_in_still_produces(secured: Broker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=secured.bootstrap_servers, **security_options(secured.security))
    await producer.start()
    try:
        await producer.send_and_wait("isolated-probe", b"through the relay")
    finally:
        await producer.stop()
