"""The data-source sinks against the real broker: what a trainer reads back through the
announced ranges is exactly what was sent, and a failed delivery never goes unnoticed."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastavro import parse_schema, schemaless_reader
from sklearn.datasets import load_breast_cancer, load_digits, load_iris

from shared.control import ControlMessage, TopicRange, deployment_id_from_key, parse_control
from shared.datasources import AsyncAvroSink, AsyncRawSink, DeliveryError, RawSink, SinkError
from shared.datasources.send import send_file
from shared.errors import Invalid
from shared.kafka import create_topics
from shared.settings import Settings
from shared.stack.broker import Broker, free_port, start_broker
from shared.topics import TopicSpec

pytestmark = pytest.mark.integration

Record = tuple[bytes | None, bytes | None]  # (key, value)


def unique(name: str) -> str:
    return f"ds-{name}-{uuid.uuid4().hex[:8]}"


async def control_topic(broker: Broker) -> str:
    """A control topic as the stack creates it (one partition)."""
    name = unique("control")
    await create_topics(Settings(bootstrap_servers=broker.bootstrap_servers), [TopicSpec(name, partitions=1)])
    return name


async def read_control(broker: Broker, topic: str, timeout_s: float = 20) -> tuple[int, ControlMessage]:
    """The one control message on ``topic``, read from the beginning without a group."""
    found = await read_all(broker, topic, expected=1, timeout_s=timeout_s)
    assert len(found) == 1, f"expected one control message, got {len(found)}"
    key, value = found[0]
    return deployment_id_from_key(key), parse_control(value)


async def read_all(broker: Broker, topic: str, expected: int, timeout_s: float = 20) -> list[Record]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await consumer._client._wait_on_metadata(topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend((r.key, r.value) for r in records)
        # A little longer: anything beyond ``expected`` is a duplicate the test must see.
        for records in (await consumer.getmany(timeout_ms=300)).values():
            found.extend((r.key, r.value) for r in records)
        return found
    finally:
        await consumer.stop()


async def read_ranges(broker: Broker, ranges: list[TopicRange], timeout_s: float = 30) -> dict[int, list[Record]]:
    """Reads each range as a trainer does: seek to ``start``, read up to ``end`` (exclusive)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        wanted = {TopicPartition(r.topic, r.partition): r for r in ranges}
        consumer.assign(list(wanted))
        for tp, r in wanted.items():
            consumer.seek(tp, r.start)
        found: dict[int, list[Record]] = defaultdict(list)
        open_ = set(wanted)
        deadline = time.monotonic() + timeout_s
        while open_ and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(*open_, timeout_ms=200)).items():
                for record in records:
                    if record.offset < wanted[tp].end:
                        found[tp.partition].append((record.key, record.value))
                if records and records[-1].offset + 1 >= wanted[tp].end:
                    open_.discard(tp)
        assert not open_, f"ranges not read to the end in time: {open_}"
        return found
    finally:
        await consumer.stop()


async def test_raw_sink_digits_for_deployment_300(broker: Broker) -> None:
    digits = load_digits()
    images, labels = digits.images.astype(np.uint8), digits.target.astype(np.uint8)
    control, data_topic = await control_topic(broker), unique("digits")

    # Upstream's call, with only the import changed (plus the partition count for the embedded broker).
    sink = RawSink(
        boostrap_servers=broker.bootstrap_servers,
        topic=data_topic,
        deployment_id=300,
        data_type="uint8",
        label_type="uint8",
        description="digits",
        validation_rate=0.1,
        test_rate=0.1,
        control_topic=control,
        partitions=2,
    )
    for x, y in zip(images, labels, strict=True):
        sink.send(data=x, label=y)
    sent = sink.close()

    deployment_id, message = await read_control(broker, control)
    assert deployment_id == 300
    assert message == sent
    assert message.input_format == "RAW" and message.total_msg == 1797 and message.description == "digits"
    assert (message.validation_rate, message.test_rate, message.incremental) == (0.1, 0.1, False)
    assert message.input_config == {
        "data_type": "uint8",
        "label_type": "uint8",
        "data_reshape": "8 8",
        "label_reshape": "1",
    }
    ranges = message.ranges()
    assert [(r.topic, r.partition) for r in ranges] == [(data_topic, 0), (data_topic, 1)]
    assert sum(r.count for r in ranges) == 1797

    read = await read_ranges(broker, ranges)
    # Round-robin over the sorted partitions: partition p holds samples p, p+2, p+4, ... in order.
    for partition in (0, 1):
        expected = [(labels[i].tobytes(), images[i].tobytes()) for i in range(partition, 1797, 2)]
        assert read[partition] == expected
    # Every class in every partition: the label key does not pick the partition.
    for partition in (0, 1):
        assert {key for key, _ in read[partition]} == {bytes([c]) for c in range(10)}


async def test_async_avro_sink_breast_cancer(broker: Broker) -> None:
    cancer = load_breast_cancer()
    names = [name.replace(" ", "_") for name in cancer.feature_names]
    data_schema = {"type": "record", "name": "data", "fields": [{"name": n, "type": "float"} for n in names]}
    label_schema = {"type": "record", "name": "label", "fields": [{"name": "benign", "type": "boolean"}]}
    control, data_topic = await control_topic(broker), unique("cancer")

    async with AsyncAvroSink(
        bootstrap_servers=broker.bootstrap_servers,
        topic=data_topic,
        deployment_id=5,
        data_scheme=data_schema,
        label_scheme=label_schema,
        validation_rate=0.2,
        control_topic=control,
        partitions=3,
    ) as sink:
        for row, target in zip(cancer.data, cancer.target, strict=True):
            await sink.send_avro(dict(zip(names, row, strict=True)), {"benign": bool(target)})

    deployment_id, message = await read_control(broker, control)
    assert deployment_id == 5 and message == sink.control_message
    assert message.input_format == "AVRO" and message.total_msg == len(cancer.data) == 569
    config = message.avro_config()
    announced_data, announced_label = config.schema_of("data"), config.schema_of("label")
    assert announced_data == data_schema and announced_label == label_schema
    data_parsed, label_parsed = parse_schema(announced_data), parse_schema(announced_label)

    read = await read_ranges(broker, message.ranges())
    decoded: list[tuple[Any, Any]] = []
    for records in read.values():
        for key, value in records:
            assert key is not None and value is not None
            decoded.append(
                (
                    schemaless_reader(io.BytesIO(value), data_parsed, None),
                    schemaless_reader(io.BytesIO(key), label_parsed, None),
                )
            )
    assert len(decoded) == 569
    got = sorted((tuple(data[n] for n in names), label["benign"]) for data, label in decoded)
    want = sorted(
        (tuple(float(np.float32(v)) for v in row), bool(t)) for row, t in zip(cancer.data, cancer.target, strict=True)
    )
    assert got == want


async def test_unsupervised_samples_are_announced_separately(broker: Broker) -> None:
    control = await control_topic(broker)
    data_topic, unsupervised = unique("sup"), unique("unsup")
    async with AsyncRawSink(
        bootstrap_servers=broker.bootstrap_servers,
        topic=data_topic,
        deployment_id=9,
        data_type="float32",
        label_type="uint8",
        control_topic=control,
        unsupervised_topic=unsupervised,
        partitions=1,
    ) as sink:
        await sink.send_many(np.eye(4), [0, 1, 2, 3])
        for _ in range(3):
            await sink.unsupervised_send(np.ones(4))
    [(_, value)] = await read_all(broker, control, expected=1)
    # Upstream's semi-supervised form goes out as upstream sends it; consumers refuse it.
    with pytest.raises(Invalid, match="semi-supervised training is not supported"):
        parse_control(value)
    message = ControlMessage.model_validate_json(value or b"")
    assert message.topic == f"{data_topic}:0:0:4" and message.total_msg == 4
    assert message.unsupervised_topic == f"{unsupervised}:0:0:3"
    unlabelled = await read_all(broker, unsupervised, expected=3)
    assert unlabelled == [(None, np.ones(4, np.float32).tobytes())] * 3


async def test_unreachable_broker_raises_quickly() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(SinkError, match="cannot reach the Kafka brokers"):
        RawSink(nowhere, "t", 1, "uint8", "uint8", request_timeout_ms=1000)
    sink = AsyncRawSink(nowhere, "t", 1, "uint8", "uint8", request_timeout_ms=1000)
    with pytest.raises(SinkError, match="cannot reach the Kafka brokers"):
        await sink.send(np.zeros(2), 1)
    assert time.monotonic() - started < 15


async def test_a_broker_lost_mid_stream_raises_and_announces_nothing(tmp_path: Path) -> None:
    with start_broker(tmp_path) as private:
        sink = RawSink(
            private.bootstrap_servers,
            "lost",
            1,
            "float32",
            "uint8",
            control_topic="control",
            partitions=1,
            request_timeout_ms=1500,
            max_in_flight=20,
        )
        sink.send_many(np.zeros((10, 2)), np.zeros(10))
        sink.flush()
        private.stop(timeout=0.5)  # a crash, not a polite shutdown (which takes seconds)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"\d+ of \d+ records were not delivered; first error: "):
            sink.send_many(np.zeros((100, 2)), np.zeros(100))
            sink.close()
        assert time.monotonic() - started < 15
        assert sink.control_message is None
        sink.abort()


@pytest.mark.parametrize("input_format", ["RAW", "AVRO"])
async def test_send_file_csv(broker: Broker, tmp_path: Path, input_format: str) -> None:
    iris = load_iris()
    path = tmp_path / "iris.csv"
    header = [*iris.feature_names, "species"]
    rows = [",".join([*(f"{v:g}" for v in row), str(t)]) for row, t in zip(iris.data, iris.target, strict=True)]
    path.write_text("\n".join([",".join(header), *rows]) + "\n")
    control, data_topic = await control_topic(broker), unique("iris")
    lines: list[str] = []

    sent = send_file(
        path,
        bootstrap_servers=broker.bootstrap_servers,
        deployment_id=7,
        topic=data_topic,
        label_column="species",
        input_format=input_format,  # type: ignore[arg-type]
        data_type="float32",
        label_type="uint8",
        control_topic=control,
        partitions=2,
        progress=False,
        echo=lines.append,
    )

    assert len(lines) == 1
    assert lines[0].startswith(f"sent 150 samples to topic {data_topic} (2 partitions) for deployment 7 in ")
    assert lines[0].endswith(" s")
    deployment_id, message = await read_control(broker, control)
    assert deployment_id == 7 and message == sent and message.total_msg == 150
    assert (message.validation_rate, message.test_rate) == (0.1, 0.1)
    read = [record for records in (await read_ranges(broker, message.ranges())).values() for record in records]
    assert len(read) == 150
    if input_format == "RAW":
        assert message.input_config["data_reshape"] == "4"
        got = sorted((np.frombuffer(v, np.float32).tolist(), k[0]) for k, v in read if k and v)
    else:
        config = message.avro_config()
        data_schema, label_schema = config.schema_of("data"), config.schema_of("label")
        assert data_schema is not None and label_schema is not None
        assert [f["name"] for f in data_schema["fields"]] == [
            "sepal_length__cm_",
            "sepal_width__cm_",
            "petal_length__cm_",
            "petal_width__cm_",
        ]
        assert label_schema["fields"] == [{"name": "species", "type": "int"}]
        data_parsed, label_parsed = parse_schema(data_schema), parse_schema(label_schema)
        got = []
        for k, v in read:
            assert k is not None and v is not None
            record: Any = schemaless_reader(io.BytesIO(v), data_parsed, None)
            label: Any = schemaless_reader(io.BytesIO(k), label_parsed, None)
            got.append((list(record.values()), label["species"]))
        got.sort()
    want = sorted((np.asarray(row, np.float32).tolist(), int(t)) for row, t in zip(iris.data, iris.target, strict=True))
    assert got == want
    assert json.loads(message.model_dump_json())["topic"] == message.topic
