"""The control logger's handler against an in-memory unit of work and topic catalog."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any, Self

import pytest

from services.control_logger.handlers import named_partitions, record_datasource
from shared.control import key_for_deployment, parse_control
from shared.db.tables import Datasource
from shared.errors import Invalid
from shared.events import DatasourceRecorded
from shared.kafka import Received

CONTROL_TOPIC = "KAFKA_ML_CONTROL_TOPIC"


class FakeDatasources:
    """Unique on the control position and timestamp, as the table is."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, int, int], Datasource] = {}
        self.ids = itertools.count(1)

    async def record(self, datasource: Datasource) -> Datasource:
        position = (datasource.control_topic, datasource.partition, datasource.offset, datasource.record_timestamp)
        if position not in self.rows:
            datasource.id = next(self.ids)
            datasource.created_at = datetime.now(UTC)
            self.rows[position] = datasource
        return self.rows[position]


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.datasources = FakeDatasources()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def commit(self) -> None:
        return None

    async def rollback(self) -> None:
        return None


class FakeTopics:
    def __init__(self, **partitions: int) -> None:
        self.known = partitions

    async def partitions(self, topic: str) -> int | None:
        return self.known.get(topic)


def control(**overrides: Any) -> bytes:
    message: dict[str, Any] = {
        "topic": "digits:0:0:1797",
        "input_format": "RAW",
        "input_config": {"data_type": "uint8", "label_type": "uint8", "data_reshape": "8 8", "label_reshape": "1"},
        "validation_rate": 0.1,
        "test_rate": 0.1,
        "total_msg": 1797,
        "description": "digits",
    }
    message.update(overrides)
    return json.dumps(message).encode()


def record(value: bytes | None, *, key: bytes | None = b"\x01", offset: int = 0) -> Received:
    return Received(topic=CONTROL_TOPIC, partition=0, offset=offset, key=key, value=value)


async def test_a_control_message_is_recorded_once_and_announced_with_a_stable_id() -> None:
    uow, topics = FakeUnitOfWork(), FakeTopics(digits=1)
    received = record(control(), key=key_for_deployment(300), offset=5)
    assert len(received.key or b"") == 2
    [first] = await record_datasource(received, uow, topics=topics)  # type: ignore[arg-type]
    [again] = await record_datasource(received, uow, topics=topics)  # type: ignore[arg-type]  # redelivered
    assert len(uow.datasources.rows) == 1
    assert isinstance(first, DatasourceRecorded)
    assert first.event_id == again.event_id and first.payload == again.payload
    recorded = first.payload
    assert (recorded.deployment_id, recorded.topic, recorded.total_msg) == (300, "digits:0:0:1797", 1797)
    assert (recorded.control_topic, recorded.partition, recorded.offset) == (CONTROL_TOPIC, 0, 5)
    assert first.key() == b"300"  # partitioned by deployment

    [other] = await record_datasource(record(control(), offset=6), uow, topics=topics)  # type: ignore[arg-type]
    assert other.event_id != first.event_id and len(uow.datasources.rows) == 2


@pytest.mark.parametrize(
    ("value", "key", "words"),
    [
        (b"not json", b"\x01", "malformed control message"),
        (None, b"\x01", "needs a value"),
        (control(input_format="CSV"), b"\x01", "input_format"),
        (control(validation_rate=0.5, test_rate=0.5), b"\x01", "sum below 1"),
        (control(topic="digits:0:zero:10"), b"\x01", "non-integer"),
        (control(), None, "deployment id as its key"),
        (control(), b"", "deployment id as its key"),
    ],
)
async def test_malformed_control_messages_are_refused_naming_the_problem(
    value: bytes | None, key: bytes | None, words: str
) -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(Invalid, match=words):
        await record_datasource(record(value, key=key), uow, topics=FakeTopics(digits=1))  # type: ignore[arg-type]
    assert not uow.datasources.rows


async def test_a_control_message_naming_a_missing_topic_or_partition_is_refused() -> None:
    uow = FakeUnitOfWork()
    with pytest.raises(Invalid, match="topic 'nowhere' named in the control message does not exist"):
        await record_datasource(  # type: ignore[arg-type]
            record(control(topic="digits:0:0:10,nowhere:0:0:10", total_msg=20)), uow, topics=FakeTopics(digits=1)
        )
    with pytest.raises(Invalid, match=r"has 1 partition.*names partition 2"):
        await record_datasource(  # type: ignore[arg-type]
            record(control(topic="digits:2:0:10", total_msg=10)), uow, topics=FakeTopics(digits=1)
        )
    assert not uow.datasources.rows


async def test_the_online_form_names_bare_topics() -> None:
    uow = FakeUnitOfWork()
    online = control(topic="live", total_msg=None)
    assert named_partitions(parse_control(online)) == [("live", None)]
    [event] = await record_datasource(record(online), uow, topics=FakeTopics(live=4))  # type: ignore[arg-type]
    assert event.payload.total_msg is None
    with pytest.raises(Invalid, match="'gone'"):
        await record_datasource(record(control(topic="gone", total_msg=None)), uow, topics=FakeTopics(live=4))  # type: ignore[arg-type]
