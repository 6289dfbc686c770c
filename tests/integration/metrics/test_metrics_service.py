"""The metrics service against the real broker and PostgreSQL: curves, final metrics and a
reassembled artifact are stored once, whatever the order and however often they arrive."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from services.metrics.app import MetricsService
from services.metrics.handlers import ROUTER
from services.metrics.uow import SqlMetricsUnitOfWork
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.roles import plain_url
from shared.events import ArtifactChunk, EpochCompleted, TrainingFinished
from shared.events.training import (
    ArtifactRef,
    Chunk,
    EpochMetrics,
    Progress,
    SampleCounts,
    TrainingOutcome,
    TrainingPhase,
    TrainingProgress,
)
from shared.handling import handle_batch_once
from shared.kafka import Producer, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import service_env

pytestmark = pytest.mark.integration

CONSUMER = MetricsService.name

StartService = Callable[..., subprocess.Popen[bytes]]


async def create_result(database: str) -> int:
    """The catalog rows a training result needs (the orchestrator writes them in production)."""
    connection = await asyncpg.connect(plain_url(database))
    try:
        model = await connection.fetchval(
            "INSERT INTO models (name, framework, code, imports, description, summary, command_id)"
            " VALUES ('m', 'tensorflow', 'x', '', '', '{}'::jsonb, gen_random_uuid()) RETURNING id"
        )
        configuration = await connection.fetchval(
            "INSERT INTO configurations (name, description, command_id)"
            " VALUES ('c', '', gen_random_uuid()) RETURNING id"
        )
        deployment = await connection.fetchval(
            "INSERT INTO deployments (configuration_id, batch_size, fit, evaluate, confusion_matrix, gpus, command_id)"
            " VALUES ($1, 32, '{}'::jsonb, '{}'::jsonb, true, 0, gen_random_uuid()) RETURNING id",
            configuration,
        )
        job = uuid.uuid4()
        await connection.execute(
            "INSERT INTO training_jobs (id, deployment_id, spec) VALUES ($1, $2, '{}'::jsonb)", job, deployment
        )
        result: int = await connection.fetchval(
            "INSERT INTO training_results (deployment_id, model_id, job_id, status)"
            " VALUES ($1, $2, $3, 'training') RETURNING id",
            deployment,
            model,
            job,
        )
        return result
    finally:
        await connection.close()


def epochs(result_id: int, count: int = 10) -> list[EpochCompleted]:
    return [
        EpochCompleted(
            payload=EpochMetrics(
                result_id=result_id, epoch=n, train={"loss": 1 / n, "acc": n / 20}, val={"loss": 2 / n}
            )
        )
        for n in range(1, count + 1)
    ]


def artifact_chunks(result_id: int, data: bytes, count: int) -> list[ArtifactChunk]:
    size = -(-len(data) // count)
    digest = hashlib.sha256(data).hexdigest()
    return [
        ArtifactChunk(
            payload=Chunk(
                result_id=result_id,
                index=i,
                count=count,
                sha256=digest,
                data=base64.b64encode(data[i * size : (i + 1) * size]).decode(),
            )
        )
        for i in range(count)
    ]


def finished(result_id: int, data: bytes, chunks: int) -> TrainingFinished:
    return TrainingFinished(
        payload=TrainingOutcome(
            result_id=result_id,
            deployment_id=1,
            test_metrics={"loss": 0.3, "acc": 0.91},
            confusion_matrix=[[9, 1], [0, 10]],
            training_time=42.0,
            artifact=ArtifactRef(
                format="keras", size=len(data), sha256=hashlib.sha256(data).hexdigest(), chunks=chunks
            ),
            samples=SampleCounts(train=160, validation=20, test=20),
        )
    )


async def fetch(database: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(plain_url(database))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def wait_until(database: str, query: str, expected: Any, timeout_s: float = 60) -> Any:
    """Polls ``query`` (one value) until it returns ``expected``; returns the last value."""
    connection = await asyncpg.connect(plain_url(database))
    try:
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = await connection.fetchval(query)
            if value == expected:
                return value
            await asyncio.sleep(0.1)
        return value
    finally:
        await connection.close()


async def read_records(settings: Settings, topic: str, count: int, timeout_s: float = 30) -> list[Any]:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


async def test_a_batch_applied_twice_adds_no_row(database: str) -> None:
    """The batch path's SQL against the real schema, without a broker."""
    result = await create_result(database)
    data = os.urandom(5000)
    messages = [*epochs(result, 3), finished(result, data, 2), *artifact_chunks(result, data, 2)]
    engine = make_engine(database)
    sessions = make_sessionmaker(engine)
    try:
        first = await handle_batch_once(messages, ROUTER, uow=SqlMetricsUnitOfWork(sessions), consumer=CONSUMER)
        again = await handle_batch_once(messages, ROUTER, uow=SqlMetricsUnitOfWork(sessions), consumer=CONSUMER)
    finally:
        await engine.dispose()
    assert (first.applied, first.skipped) == (6, 0)
    assert (again.applied, again.skipped) == (0, 6)
    [artifact] = await fetch(
        database, "SELECT sha256, size, data, version FROM model_versions WHERE result_id = $1", result
    )
    assert bytes(artifact["data"]) == data and artifact["sha256"] == hashlib.sha256(data).hexdigest()
    assert artifact["version"] == 1
    counts = await fetch(
        database,
        "SELECT (SELECT count(*) FROM epoch_metrics) AS epochs, (SELECT count(*) FROM final_metrics) AS finals,"
        " (SELECT count(*) FROM artifact_chunks) AS chunks, (SELECT count(*) FROM processed_messages) AS processed",
    )
    assert dict(counts[0]) == {"epochs": 3, "finals": 1, "chunks": 0, "processed": 6}


async def test_the_latest_progress_report_of_a_result_is_kept(database: str) -> None:
    result = await create_result(database)

    def report(phase: TrainingPhase, detail: str, done: int | None = None) -> TrainingProgress:
        payload = Progress(result_id=result, deployment_id=1, phase=phase, detail=detail, done=done, total=1797)
        return TrainingProgress(payload=payload)

    messages = [report("starting", "trainer started"), report("reading_data", "read 900 of 1,797 samples", 900)]
    engine = make_engine(database)
    try:
        applied = await handle_batch_once(
            messages, ROUTER, uow=SqlMetricsUnitOfWork(make_sessionmaker(engine)), consumer=CONSUMER
        )
    finally:
        await engine.dispose()
    assert applied.applied == 2
    [row] = await fetch(
        database, "SELECT phase, detail, done, total FROM training_progress WHERE result_id = $1", result
    )
    assert dict(row) == {"phase": "reading_data", "detail": "read 900 of 1,797 samples", "done": 900, "total": 1797}


async def test_metrics_service_stores_curves_final_metrics_and_artifact_once(
    settings: Settings, database: str, run_service: StartService
) -> None:
    topics = topics_for(settings)
    await ensure_topics(settings)
    result = await create_result(database)
    run_service("services.metrics", service_env(settings, database=True), name="metrics")

    data = os.urandom(300_000)
    chunks = artifact_chunks(result, data, 3)
    curve = epochs(result)
    final = finished(result, data, 3)
    orphan = EpochCompleted(payload=EpochMetrics(result_id=result + 1000, epoch=1, train={"loss": 1.0}))
    async with Producer(settings) as producer:
        for event in curve:
            await producer.publish(event)
        await producer.send(topics.events, b"{not an envelope", key=b"x")  # undecodable: dead-lettered
        await producer.publish(orphan)  # its result does not exist: dead-lettered
        await producer.publish(final)
        # Out of order, one chunk delivered twice.
        for chunk in (chunks[2], chunks[0], chunks[2], chunks[1]):
            await producer.publish(chunk)

        assert await wait_until(database, "SELECT count(*) FROM model_versions", 1) == 1
        assert await wait_until(database, "SELECT count(*) FROM epoch_metrics", 10) == 10
        assert await wait_until(database, "SELECT count(*) FROM final_metrics", 1) == 1

        # Redelivered after everything is stored: an epoch, the final metrics and a chunk.
        await producer.publish(curve[4])
        await producer.publish(final)
        await producer.publish(chunks[0])
        marker = epochs(result, 11)[-1]  # an 11th epoch: once it is stored, the redeliveries were handled
        await producer.publish(marker)
    assert await wait_until(database, "SELECT count(*) FROM epoch_metrics", 11) == 11

    [artifact] = await fetch(database, "SELECT sha256, size, data FROM model_versions WHERE result_id = $1", result)
    assert bytes(artifact["data"]) == data
    assert artifact["sha256"] == hashlib.sha256(data).hexdigest() and artifact["size"] == len(data)
    assert await fetch(database, "SELECT * FROM artifact_chunks") == []
    [stored_final] = await fetch(database, "SELECT * FROM final_metrics WHERE result_id = $1", result)
    assert stored_final["artifact_sha256"] == artifact["sha256"] and stored_final["training_time"] == 42.0
    rows = await fetch(database, "SELECT epoch FROM epoch_metrics WHERE result_id = $1 ORDER BY epoch", result)
    assert [r["epoch"] for r in rows] == list(range(1, 12))
    processed = await fetch(database, "SELECT count(*) AS n FROM processed_messages WHERE consumer = $1", CONSUMER)
    assert processed[0]["n"] == 10 + 1 + 3 + 1  # each distinct event once, redeliveries not again

    dead = await read_records(settings, topics.dead_letters, 2)
    reasons = sorted(dict(r.headers)["kafkaml-dlq-reason"].decode() for r in dead)
    assert len(dead) == 2 and all(dict(r.headers)["kafkaml-dlq-consumer"] == b"metrics" for r in dead)
    assert "not a Kafka-ML message" in reasons[0]
    assert f"training result {result + 1000} does not exist" in reasons[1]
