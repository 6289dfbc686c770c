"""Upstream's online sink and Avro inference source on the wire, against a recording producer
(no broker): the online control message goes out once, before the first record, equal to what
upstream's ``OnlineRawSink`` builds for the same call (reconstructed from upstream's source);
``AvroInference`` values are Avro's binary encoding, byte for byte."""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.control import parse_control
from shared.datasources import AsyncAvroInference, AsyncOnlineRawSink, SinkError


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes | None


@dataclass
class Metadata:
    partition: int
    offset: int


class RecordingProducer:
    """Stands in for AIOKafkaProducer: records what was sent, in order, and acknowledges it."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.stopped = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> Any:
        self.sent.append(Sent(topic, value, key))
        future: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        future.set_result(Metadata(partition or 0, len(self.sent) - 1))
        return future

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> Metadata:
        self.sent.append(Sent(topic, value, key))
        return Metadata(0, len(self.sent) - 1)

    async def stop(self) -> None:
        self.stopped = True


def online_sink(**options: Any) -> tuple[AsyncOnlineRawSink, RecordingProducer]:
    sink = AsyncOnlineRawSink(
        boostrap_servers="127.0.0.1:9094", topic="automl", deployment_id=1, description="Mnist dataset", **options
    )
    producer = RecordingProducer()
    sink._producer = producer  # started: the recording producer takes the place of the real one
    return sink, producer


async def test_announces_once_before_the_first_record_as_upstream_does() -> None:
    sink, producer = online_sink(validation_rate=0.1)
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    labels = np.array([5, 0, 4], dtype=np.uint8)
    for x, y in zip(images, labels, strict=True):
        await sink.send(data=x, label=y)
    assert await sink.close() is sink.control_message
    assert producer.stopped

    control, *records = producer.sent
    assert control.topic == "KAFKA_ML_CONTROL_TOPIC" and control.key == bytes([1])  # upstream: bytes([id])
    # What upstream's OnlineRawSink sends for this call (its dict, field for field).
    assert json.loads(control.value) == {
        "topic": "automl",
        "unsupervised_topic": None,
        "input_format": "RAW",
        "description": "Mnist dataset",
        "input_config": {"data_type": "uint8", "label_type": "uint8", "data_reshape": "28 28", "label_reshape": "1"},
        "validation_rate": 0.1,
        "test_rate": 0,
        "total_msg": None,
        "dataset_restrictions": {},
        "incremental": True,
    }
    message = parse_control(control.value)
    assert (message.topic, message.total_msg, message.incremental) == ("automl", None, True)
    # The records: value = the sample's bytes, key = the label's bytes (upstream's tobytes()).
    assert [(r.topic, r.value, r.key) for r in records] == [
        ("automl", x.tobytes(), y.tobytes()) for x, y in zip(images, labels, strict=True)
    ]


async def test_declared_types_are_announced_and_samples_cast_to_them() -> None:
    sink, producer = online_sink(data_type="float32", label_type="uint8", data_reshape="4")
    await sink.send(np.array([1, 2, 3, 4]), 3)
    await sink.send(np.array([5, 6, 7, 8]), 1)
    await sink.online_close()
    control, first, second = producer.sent
    assert parse_control(control.value).input_config == {
        "data_type": "float32",
        "label_type": "uint8",
        "data_reshape": "4",
        "label_reshape": "1",
    }
    assert first.value == np.array([1, 2, 3, 4], np.float32).tobytes() and first.key == b"\x03"
    assert second.key == b"\x01"


async def test_concurrent_first_sends_announce_once() -> None:
    sink, producer = online_sink()
    await asyncio.gather(*(sink.send(np.uint8(i), np.uint8(i)) for i in range(5)))
    await sink.online_close()
    assert [s.topic for s in producer.sent] == ["KAFKA_ML_CONTROL_TOPIC"] + ["automl"] * 5


async def test_a_bad_first_sample_announces_nothing() -> None:
    sink, producer = online_sink(data_type="uint8")
    with pytest.raises(ValueError, match="non-integer"):
        await sink.send(np.array([0.5]), 1)
    assert producer.sent == [] and not sink.announced
    await sink.send(np.array([1]), 1)
    assert [s.topic for s in producer.sent] == ["KAFKA_ML_CONTROL_TOPIC", "automl"]


async def test_closing_without_samples_announces_nothing() -> None:
    sink, producer = online_sink()
    assert await sink.close() is None
    assert producer.sent == [] and producer.stopped


async def test_with_an_unsupervised_topic_only_an_explicit_announcement_goes_out() -> None:
    # Upstream's semi-supervised online form: no announcement on send (the control logger refuses it).
    sink, producer = online_sink(unsupervised_topic="automl-unlabelled")
    await sink.send(np.uint8(1), np.uint8(1))
    assert [s.topic for s in producer.sent] == ["automl"]
    message = await sink.send_online_control_msg()
    assert message.unsupervised_topic == "automl-unlabelled" and message.incremental


# --- AvroInference -------------------------------------------------------------

HCOPD_SCHEMA = {
    "namespace": "data.ertis.uma.es",
    "type": "record",
    "name": "HCOPD",
    "fields": [
        {"name": "gender", "type": "float"},
        {"name": "age", "type": "float"},
        {"name": "smoking", "type": "float"},
    ],
}


def avro_inference(tmp_path: Path) -> tuple[AsyncAvroInference, RecordingProducer]:
    schema_file = tmp_path / "data_scheme.avsc"
    schema_file.write_text(json.dumps(HCOPD_SCHEMA))
    source = AsyncAvroInference(boostrap_servers="127.0.0.1:9094", topic="hcopd-in", data_scheme_filename=schema_file)
    producer = RecordingProducer()
    source._producer = producer
    return source, producer


async def test_avro_inference_sends_schemaless_avro_values_without_key(tmp_path: Path) -> None:
    source, producer = avro_inference(tmp_path)
    rows = [(1.0, -0.5, 0.25), (np.float64(-1.0), np.float64(2.0), np.float64(0.0))]  # upstream sends numpy floats
    for gender, age, smoking in rows:
        await source.send({"gender": gender, "age": age, "smoking": smoking})
    assert await source.close() is None and producer.stopped
    # Avro's binary encoding of a record of three floats: each a 4-byte little-endian IEEE float,
    # in field order, nothing around them (upstream's DatumWriter into a BinaryEncoder writes this).
    assert [(s.topic, s.value, s.key) for s in producer.sent] == [
        ("hcopd-in", struct.pack("<fff", *map(float, row)), None) for row in rows
    ]


async def test_avro_inference_announces_nothing_and_checks_records(tmp_path: Path) -> None:
    source, producer = avro_inference(tmp_path)
    with pytest.raises(ValueError, match="age"):
        await source.send({"gender": 1.0, "age": "old", "smoking": 0.0})
    with pytest.raises(SinkError, match="values only"):
        await source.send({"gender": 1.0, "age": 1.0, "smoking": 0.0}, {"label": 1})
    with pytest.raises(SinkError, match="announces nothing"):
        await source.send_control_msg()
    assert producer.sent == []
    assert source.input_config["data_scheme"] == json.dumps(HCOPD_SCHEMA)
