"""JSON and TELEGRAF_STR_JSON training streams train a model through the real trainer worker
(its job function in-process, against the real broker): labels from the record keys (JSON) and
from a field of the payload (Telegraf metrics, as the MQTT consumer emits them); one bad
record is skipped and counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from services.trainer.worker import train_job
from shared.events.training import EpochCompleted, TrainingFinished
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.integration.trainer.test_worker import (
    DIGIT_IMAGES,
    DIGIT_LABELS,
    control,
    data_topic,
    events,
    job,
    model,
    of_type,
    produce,
    ranges,
    send_control,
)

pytestmark = pytest.mark.integration

COUNT = 200
TINY_MODEL = """\
model = tf.keras.Sequential([
    tf.keras.layers.Input(shape=(64,)),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
"""


def json_records() -> list[tuple[bytes | None, bytes]]:
    """JSON: the value a list of numbers, the key the label (JSON as well)."""
    return [
        (str(int(y)).encode(), json.dumps(x.reshape(-1).tolist()).encode())
        for x, y in zip(DIGIT_IMAGES[:COUNT], DIGIT_LABELS[:COUNT], strict=True)
    ]


def telegraf_records() -> list[tuple[bytes | None, bytes]]:
    """Telegraf metrics whose string field ``value`` holds ``{"data": [...], "label": n}``; no keys."""
    out: list[tuple[bytes | None, bytes]] = []
    for x, y in zip(DIGIT_IMAGES[:COUNT], DIGIT_LABELS[:COUNT], strict=True):
        payload = json.dumps({"data": x.reshape(-1).tolist(), "label": int(y)})
        metric = {"fields": {"value": payload}, "name": "mqtt_consumer", "tags": {"topic": "digits"}, "timestamp": 1}
        out.append((None, json.dumps(metric).encode()))
    return out


CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "JSON": (json_records, {"data_reshape": "64"}),
    "TELEGRAF_STR_JSON": (telegraf_records, {"label_field": "label", "data_field": "data"}),
}


@pytest.fixture
async def topics(settings: Settings) -> AsyncIterator[Settings]:
    await ensure_topics(settings)
    yield settings


@pytest.mark.parametrize("input_format", list(CASES))
async def test_a_json_stream_trains_a_model(topics: Settings, input_format: str) -> None:
    settings = topics
    make_records, input_config = CASES[input_format]
    records = make_records()
    records.insert(50, (b"3", b'{"fields": {"value": "[1, 2"}}'))  # bad in either format
    topic = await data_topic(settings)
    acks = await produce(settings, topic, records)
    deployment, result = (21, 211) if input_format == "JSON" else (22, 221)
    await send_control(
        settings,
        deployment,
        control(ranges(topic, 2, acks), len(records), input_format=input_format, input_config=input_config),
    )
    spec = job(deployment, [model(result, {"code": TINY_MODEL})], fit={"epochs": 2})
    assert await train_job(settings, spec) == {result: "finished"}

    messages = await events(settings, [result], timeout_s=10)
    assert len(of_type(messages, EpochCompleted, result)) == 2
    (finished,) = of_type(messages, TrainingFinished, result)
    samples = finished.payload.samples
    assert samples.bad == 1 and samples.train + samples.validation + samples.test == COUNT
    assert samples.test == 20 and finished.payload.test_metrics["accuracy"] is not None
    assert finished.payload.datasource is not None and finished.payload.datasource.input_format == input_format
    assert np.isfinite(of_type(messages, EpochCompleted, result)[-1].payload.train["loss"])
