"""A bus that cannot be forged: trainers and inferencers run strangers' code and reach the broker,
so a message without a valid signature, or signed with another job's key, goes to the
dead-letter topic and changes nothing; a command signed as docs/contracts.md says, sent by a
user's own kafka-python producer (examples/sign_command.py), works. Real orchestrator and
metrics processes, a real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.artifacts import chunk_artifact
from shared.db.roles import plain_url
from shared.events import DeleteModel, Envelope, EpochCompleted, TrainingFailed
from shared.events.catalog import DeleteModelPayload
from shared.events.signing import Key, Keyring, job_signer
from shared.events.training import EpochMetrics, Failure
from shared.kafka import Producer, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import REPO, service_env
from tests.integration.orchestrator.test_result_ownership import logged
from tests.integration.rows import SUMMARY, add_result

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]


async def fetchval(database: str, query: str, *args: object) -> Any:
    connection = await asyncpg.connect(plain_url(database))
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


async def until(database: str, query: str, expected: object, *args: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (value := await fetchval(database, query, *args)) != expected:
        assert time.monotonic() < deadline, f"{query} is {value!r}, not {expected!r}"
        await asyncio.sleep(0.1)


async def dead_letters(settings: Settings, count: int, timeout_s: float = 60) -> dict[str, list[str]]:
    """Message type (from the copied value) → the reasons its records were dead-lettered."""
    consumer = make_consumer(settings, topics_for(settings).dead_letters, group_id=None)
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    reasons: dict[str, list[str]] = {}
    for record in found:
        kind = next(t for t in ("DeleteModel", "TrainingFailed", "ArtifactChunk") if t.encode() in record.value)
        reasons.setdefault(kind, []).append(dict(record.headers)["kafkaml-dlq-reason"].decode())
    return reasons


async def forge(producer: Producer, message: Envelope, other_job: Key) -> None:
    """The two forgeries a model author can send: unsigned, and signed with their own job's key."""
    await producer.send(producer.topics.of(message), message.to_bytes(), key=message.key())
    await producer.publish(message, signer=other_job)


async def test_forged_commands_and_worker_events_are_dead_lettered_and_a_signed_command_works(
    settings: Settings, database: str, run_service: StartService, tmp_path: Path
) -> None:
    await ensure_topics(settings)
    run_service("services.orchestrator", service_env(settings, database=True), name="orchestrator")
    await logged(tmp_path / "orchestrator-0.log", "orchestrator ready")
    run_service("services.metrics", service_env(settings, database=True), name="metrics")
    rows = await add_result(database, "training")
    job_id = str(await fetchval(database, "SELECT job_id FROM training_results WHERE id = $1", rows.result))
    victim = await fetchval(
        database,
        "INSERT INTO models (name, framework, code, imports, description, summary, command_id)"
        " VALUES ('victim', 'tensorflow', 'x', '', '', $1::jsonb, gen_random_uuid()) RETURNING id",
        SUMMARY,
    )
    keys = Keyring([settings.bus_key or ""])
    own_job = keys.key(job_signer(job_id, [rows.result]))  # what the result's trainer holds
    other_job = keys.key(job_signer(str(uuid.uuid4()), [rows.result + 1]))  # another author's trainer

    model = os.urandom(3000)
    async with Producer(settings) as producer:
        # The result's own trainer: its key is accepted for its own result.
        for chunk in chunk_artifact(rows.result, model):
            await producer.publish(chunk, signer=own_job)
        epoch = EpochCompleted(payload=EpochMetrics(result_id=rows.result, epoch=1, train={"loss": 0.5}))
        await producer.publish(epoch, signer=own_job)
        # Whole, it waits for its TrainingFinished to become the result's version 1.
        await until(database, "SELECT data FROM artifact_chunks WHERE result_id = $1", model, rows.result)
        await until(database, "SELECT count(*) FROM epoch_metrics WHERE result_id = $1", 1, rows.result)

        await forge(producer, DeleteModel(payload=DeleteModelPayload(model_id=victim)), other_job)
        failure = Failure(result_id=rows.result, deployment_id=rows.deployment, error="forged")
        await forge(producer, TrainingFailed(payload=failure), other_job)
        for chunk in chunk_artifact(rows.result, b"a replaced model"):
            await forge(producer, chunk, other_job)

    reasons = await dead_letters(settings, 6)
    assert sorted(reasons) == ["ArtifactChunk", "DeleteModel", "TrainingFailed"]
    for kind, why in reasons.items():
        assert len(why) == 2, (kind, why)
        assert any("unsigned" in reason for reason in why), why
        assert any(f"may not sign {kind}" in reason or "may not sign a" in reason for reason in why), why
    assert await fetchval(database, "SELECT count(*) FROM models WHERE id = $1", victim) == 1
    assert await fetchval(database, "SELECT status FROM training_results WHERE id = $1", rows.result) == "training"
    assert await fetchval(database, "SELECT data FROM artifact_chunks WHERE result_id = $1", rows.result) == model

    # A user's own producer, signing as the docs say: the command is carried out.
    env = {
        "PATH": os.environ["PATH"],
        "KAFKAML_BOOTSTRAP_SERVERS": settings.brokers,
        "KAFKAML_BUS_KEY": settings.bus_key or "",
        "KAFKAML_TOPIC_PREFIX": settings.topic_prefix,
    }
    script = [sys.executable, str(REPO / "examples" / "sign_command.py"), "DeleteModel", f'{{"model_id": {victim}}}']
    sent = await asyncio.to_thread(subprocess.run, script, env=env, capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "outcome ModelDeleted" in sent.stdout
    assert await fetchval(database, "SELECT count(*) FROM models WHERE id = $1", victim) == 0
