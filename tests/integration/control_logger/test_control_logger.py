"""The control logger against the real broker and PostgreSQL: valid control messages become
data sources and are announced; bad ones are dead-lettered with the reason and the stream goes on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from services.control_logger.handlers import record_datasource
from shared.control import key_for_deployment
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.roles import plain_url
from shared.db.uow import SqlUnitOfWork
from shared.events import DatasourceRecorded, decode
from shared.kafka import Producer, Received, create_topics, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import TopicSpec, topics_for
from tests.conftest import service_env

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]


def control(topic: str, total: int | None = 100) -> bytes:
    return json.dumps(
        {
            "topic": topic,
            "input_format": "RAW",
            "input_config": {"data_type": "uint8", "label_type": "uint8", "data_reshape": "8 8", "label_reshape": "1"},
            "validation_rate": 0.1,
            "test_rate": 0.1,
            "total_msg": total,
            "description": "digits",
        }
    ).encode()


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


async def wait_for_rows(database: str, expected: int, timeout_s: float = 60) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(plain_url(database))
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = list(await connection.fetch("SELECT * FROM datasources ORDER BY id"))
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


class KnownTopics:
    async def partitions(self, topic: str) -> int | None:
        return 1


async def test_a_redelivered_control_message_adds_no_row(database: str) -> None:
    """The unique control position does it, against the real schema (no broker needed)."""
    received = Received(topic="control", partition=0, offset=41, key=key_for_deployment(300), value=control("d:0:0:9"))
    engine = make_engine(database)
    sessions = make_sessionmaker(engine)
    try:
        answers = []
        for _ in range(2):
            async with SqlUnitOfWork(sessions) as uow:
                answers.extend(await record_datasource(received, uow, topics=KnownTopics()))
                await uow.commit()
    finally:
        await engine.dispose()
    first, again = answers
    assert first.event_id == again.event_id and first.payload == again.payload
    rows = await wait_for_rows(database, 1, timeout_s=0)
    assert len(rows) == 1 and rows[0]["deployment_id"] == 300 and rows[0]["offset"] == 41


async def test_a_new_control_message_at_an_old_position_is_a_new_data_source(database: str) -> None:
    """After an embedded broker's restart offsets start at 0 again: a new control message can take
    the position of one recorded before. Its timestamp tells them apart; a redelivery keeps its own."""
    before = Received(topic="control", partition=0, offset=0, key=key_for_deployment(1), value=control("d:0:0:9"),
                      timestamp=1_700_000_000_000)  # fmt: skip
    after = Received(topic="control", partition=0, offset=0, key=key_for_deployment(2), value=control("e:0:0:5"),
                     timestamp=1_700_000_999_000)  # fmt: skip
    engine = make_engine(database)
    sessions = make_sessionmaker(engine)
    try:
        answers = []
        for received in (before, after, after):
            async with SqlUnitOfWork(sessions) as uow:
                answers.extend(await record_datasource(received, uow, topics=KnownTopics()))
                await uow.commit()
    finally:
        await engine.dispose()
    first, second, redelivered = answers
    assert first.event_id != second.event_id, "a new data source gets its own event id"
    assert second.event_id == redelivered.event_id
    rows = await wait_for_rows(database, 2, timeout_s=0)
    assert [(r["deployment_id"], r["topic"]) for r in rows] == [(1, "d:0:0:9"), (2, "e:0:0:5")]


async def test_control_logger_records_valid_messages_and_dead_letters_bad_ones(
    settings: Settings, database: str, run_service: StartService
) -> None:
    topics = topics_for(settings)
    data_topic = f"{settings.topic_prefix}.digits"
    await ensure_topics(settings)
    await create_topics(settings, [TopicSpec(data_topic, partitions=1)])
    run_service("services.control_logger", service_env(settings, database=True), name="control-logger")

    async with Producer(settings) as producer:
        await producer.send(settings.control_topic, control(f"{data_topic}:0:0:100"), key=key_for_deployment(300))
        await producer.send(settings.control_topic, b"{not json", key=key_for_deployment(1))
        await producer.send(settings.control_topic, control(f"{data_topic}:0:100:150", 50), key=key_for_deployment(7))
        await producer.send(settings.control_topic, control("nowhere:0:0:10", 10), key=key_for_deployment(8))

    rows = await wait_for_rows(database, 2)
    assert [(r["deployment_id"], r["topic"], r["total_msg"]) for r in rows] == [
        (300, f"{data_topic}:0:0:100", 100),
        (7, f"{data_topic}:0:100:150", 50),
    ]
    assert [r["offset"] for r in rows] == [0, 2]
    assert all(r["control_topic"] == settings.control_topic for r in rows)

    announced = [decode(r.value) for r in await read_records(settings, topics.events, 2)]
    assert all(isinstance(e, DatasourceRecorded) for e in announced)
    assert sorted((e.payload.id, e.payload.deployment_id) for e in announced) == [
        (rows[0]["id"], 300),
        (rows[1]["id"], 7),
    ]

    dead = await read_records(settings, topics.dead_letters, 2)
    assert [r.value for r in dead] == [b"{not json", control("nowhere:0:0:10", 10)]
    reasons = [dict(r.headers)["kafkaml-dlq-reason"].decode() for r in dead]
    assert "malformed control message" in reasons[0]
    assert "topic 'nowhere'" in reasons[1] and "does not exist" in reasons[1]
    assert all(dict(r.headers)["kafkaml-dlq-consumer"] == b"control-logger" for r in dead)


async def test_a_topic_created_just_after_a_refresh_is_found(settings: Settings) -> None:
    """A sink creates its topic just before the control message; the cache may be younger than
    that topic (seen: a control message dead-lettered as naming a missing topic)."""
    from services.control_logger.app import BrokerTopics

    topics = BrokerTopics(settings, max_age_s=60, min_refresh_s=0.5)
    await topics.start()
    try:
        name = f"{settings.topic_prefix}-fresh"
        assert await topics.partitions(f"{settings.topic_prefix}-absent") is None  # refreshes now
        await create_topics(settings, [TopicSpec(name, 3)])
        assert await topics.partitions(name) == 3  # within min_refresh_s of that refresh
    finally:
        await topics.stop()
