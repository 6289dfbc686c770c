"""The orchestrator as a real process against the real broker and PostgreSQL:
redelivery changes nothing, and a kill mid-stream loses no command."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable

import asyncpg
import pytest

from shared.db.roles import plain_url
from shared.events import (
    ConfigurationCreated,
    ConfigurationDefinition,
    CreateConfiguration,
    CreateModel,
    Envelope,
    ModelCreated,
    ModelDefinition,
    ModelSummary,
    ModelValidated,
    ValidateModel,
    decode,
)
from shared.events.validation import ValidationPassed
from shared.kafka import Producer, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import service_env

pytestmark = pytest.mark.integration

SUMMARY = ModelSummary(
    layers=[], parameters=1, trainable_parameters=1, input_shapes=[[None, 1]], output_shapes=[[None, 1]]
)
StartService = Callable[..., subprocess.Popen[bytes]]


async def collect(settings: Settings, topic: str, count: int, timeout_s: float = 60) -> list[Envelope]:
    """Reads ``count`` messages from the start of ``topic`` (no group)."""
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


async def wait_for_count(database: str, table: str, expected: int, timeout_s: float = 90) -> int:
    connection = await asyncpg.connect(plain_url(database))
    try:
        deadline = time.monotonic() + timeout_s
        count = 0
        while time.monotonic() < deadline:
            count = await connection.fetchval(f"SELECT count(*) FROM {table}")
            if count >= expected:
                await asyncio.sleep(1.5)  # let a duplicate, if any, land too
                return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
            await asyncio.sleep(0.1)
        return int(count)
    finally:
        await connection.close()


async def test_redelivered_command_and_duplicate_validation_add_no_row(
    settings: Settings, database: str, run_service: StartService
) -> None:
    topics = topics_for(settings)
    await ensure_topics(settings)
    run_service("services.orchestrator", service_env(settings, database=True), name="orchestrator")
    command = CreateModel(payload=ModelDefinition(name="m", framework="tensorflow", code="model = 1"))
    async with Producer(settings) as producer:
        await producer.publish(command)
        await producer.publish(command)  # redelivery of the same command
        # This test plays the validator: both deliveries asked for a validation ...
        asks = await collect(settings, topics.validation, 1)
        assert isinstance(asks[0], ValidateModel) and asks[0].correlation_id == command.event_id
        answer = asks[0].reply(ModelValidated(payload=ValidationPassed(model=command.payload, summary=SUMMARY)))
        # ... and answers twice (validators are stateless: a redelivered ask is answered again).
        await producer.publish(answer)
        await producer.publish(answer)
        await producer.publish(
            asks[0].reply(ModelValidated(payload=ValidationPassed(model=command.payload, summary=SUMMARY))),
        )
    assert await wait_for_count(database, "models", 1) == 1
    events = await collect(settings, topics.events, 6, timeout_s=20)
    created = [e for e in events if isinstance(e, ModelCreated)]
    assert created and {e.payload.id for e in created} == {created[0].payload.id}
    assert all(e.correlation_id == command.event_id for e in created)


async def test_orchestrator_killed_mid_stream_loses_no_command(
    settings: Settings, database: str, run_service: StartService
) -> None:
    topics = topics_for(settings)
    await ensure_topics(settings)
    owner = await asyncpg.connect(plain_url(database))
    model_id = await owner.fetchval(
        "INSERT INTO models (name, framework, code, imports, description, summary, command_id)"
        " VALUES ('m', 'tensorflow', 'x', '', '', '{}'::jsonb, gen_random_uuid()) RETURNING id"
    )
    await owner.close()
    total = 400
    commands = [
        CreateConfiguration(payload=ConfigurationDefinition(name=f"c{i}", model_ids=[model_id])) for i in range(total)
    ]
    env = service_env(settings, database=True)
    orchestrator = run_service("services.orchestrator", env, name="orchestrator")
    async with Producer(settings) as producer:
        for command in commands:
            await producer.publish(command)

    # Kill it with SIGKILL once it is part-way through the stream.
    connection = await asyncpg.connect(plain_url(database))
    try:
        deadline = time.monotonic() + 90
        done = 0
        while time.monotonic() < deadline:
            done = await connection.fetchval("SELECT count(*) FROM configurations")
            if done >= 5:
                break
            await asyncio.sleep(0.02)
        assert 0 < done < total, f"wanted to kill mid-stream, found {done} of {total} done"
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait(10)
        killed_at = await connection.fetchval("SELECT count(*) FROM configurations")
    finally:
        await connection.close()

    run_service("services.orchestrator", env, name="orchestrator-restarted")
    assert await wait_for_count(database, "configurations", total, timeout_s=120) == total
    connection = await asyncpg.connect(plain_url(database))
    try:
        stored = {r["command_id"] for r in await connection.fetch("SELECT command_id FROM configurations")}
        outcomes = await connection.fetchval("SELECT count(*) FROM command_outcomes")
    finally:
        await connection.close()
    assert stored == {c.event_id for c in commands}
    assert outcomes == total
    assert killed_at < total
    events = await collect(settings, topics.events, total, timeout_s=30)
    answered = {e.correlation_id for e in events if isinstance(e, ConfigurationCreated)}
    assert answered == {c.event_id for c in commands}
