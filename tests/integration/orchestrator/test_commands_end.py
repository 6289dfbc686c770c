"""Every command ends: one the orchestrator cannot process (a permanent failure, dead-lettered)
ends rejected with the reason instead of reading ``pending`` for ever."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable

import asyncpg
import pytest

from shared.db.roles import plain_url
from shared.events import CommandRejected, CreateModel, DeployInference, ModelDefinition, ModelValidated
from shared.events.inference import InferenceParams
from shared.events.validation import ValidationPassed
from shared.kafka import Producer, ensure_topics
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import service_env
from tests.integration.orchestrator.test_delivery import SUMMARY, collect

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]


async def outcome_of(database: str, command_id: object, timeout_s: float = 60) -> asyncpg.Record:
    connection = await asyncpg.connect(plain_url(database))
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            row = await connection.fetchrow("SELECT * FROM command_outcomes WHERE command_id = $1", command_id)
            if row is not None:
                return row
            assert time.monotonic() < deadline, "the command never ended"
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def test_a_command_that_cannot_be_processed_ends_rejected_with_the_reason(
    settings: Settings, database: str, run_service: StartService
) -> None:
    await ensure_topics(settings)
    run_service("services.orchestrator", service_env(settings, database=True), name="orchestrator")
    # A result id beyond PostgreSQL's bigint: the database refuses the query, every time.
    params = InferenceParams(result_id=10**20, input_topic="in", output_topic="out")
    command = DeployInference(payload=params)
    async with Producer(settings) as producer:
        await producer.publish(command)
    row = await outcome_of(database, command.event_id)
    assert row["outcome_type"] == "CommandRejected"
    events = [e for e in await collect(settings, topics_for(settings).events, 1) if isinstance(e, CommandRejected)]
    [answer] = [e for e in events if e.correlation_id == command.event_id]
    assert answer.payload.status == 500
    assert "DeployInference could not be processed" in answer.payload.detail


async def test_a_command_whose_answer_never_comes_ends_rejected_after_its_deadline(
    settings: Settings, database: str, run_service: StartService
) -> None:
    await ensure_topics(settings)
    env = service_env(settings, database=True) | {"KAFKAML_COMMAND_DEADLINE_S": "2"}
    run_service("services.orchestrator", env, name="orchestrator")  # and no validator: no answer comes
    command = CreateModel(payload=ModelDefinition(name="m", framework="tensorflow", code="model = 1"))
    async with Producer(settings) as producer:
        await producer.publish(command)
        row = await outcome_of(database, command.event_id, timeout_s=60)
        assert row["outcome_type"] == "CommandRejected"
        rejected = json.loads(row["event"]) if isinstance(row["event"], str) else row["event"]
        assert rejected["payload"]["status"] == 504 and rejected["payload"]["command_type"] == "CreateModel"
        assert "no answer from the validator" in rejected["payload"]["detail"]

        # The validator's answer, late: the command has ended, no model appears.
        late = command.reply(ModelValidated(payload=ValidationPassed(model=command.payload, summary=SUMMARY)))
        await producer.publish(late)
        await asyncio.sleep(3)
    connection = await asyncpg.connect(plain_url(database))
    try:
        assert await connection.fetchval("SELECT count(*) FROM models") == 0
        assert await connection.fetchval("SELECT count(*) FROM pending_commands") == 0
    finally:
        await connection.close()
