"""TELEGRAF_STR_JSON values to predict through the real inferencer (``serve`` in-process, the real
broker): Telegraf metrics carrying upstream's batch-of-one ``[[...]]`` are answered in order,
and a metric that is not decodable goes to the dead-letter topic with the reason."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from shared.settings import Settings
from shared.stack.broker import Broker
from shared.topics import topics_for
from tests.integration.inferencer.serving import (
    digits,
    keras_digits,
    make_topics,
    produce,
    publish_model,
    read_events,
    read_records,
    spec_for,
    topic_name,
    values_of,
)
from tests.integration.inferencer.test_inferencer import running, serving

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka(broker: Broker, stack_home: Path) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        home=stack_home, bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix, control_topic=f"{prefix}.ctl"
    )


def metric(payload: str) -> bytes:
    return json.dumps({"fields": {"value": payload}, "name": "mqtt_consumer", "tags": {}, "timestamp": 1}).encode()


async def test_telegraf_metrics_are_predicted_and_undecodable_ones_dead_lettered(kafka: Settings) -> None:
    images, labels = digits()
    artifact = keras_digits()
    input_topic, output_topic = topic_name(kafka, "in"), topic_name(kafka, "out")
    await make_topics(kafka, (input_topic, 1), (output_topic, 1))
    spec = spec_for(
        kafka,
        artifact,
        input_topic=input_topic,
        output_topic=output_topic,
        input_format="TELEGRAF_STR_JSON",
        input_config={"data_reshape": "8 8"},
    )
    await publish_model(kafka, spec, artifact)
    inputs = [(str(i).encode(), metric(json.dumps([images[i].astype(float).tolist()])), []) for i in range(5)]
    inputs.insert(2, (b"bad", b'{"fields": {"usage_idle": 99.5}, "name": "cpu"}', [("source", b"telegraf")]))

    async with serving(kafka, spec) as replica:
        await replica.watch(read_events(kafka, running()))
        await produce(kafka, input_topic, inputs)
        outputs = await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= 5, 30))
        [dead] = await replica.watch(read_records(kafka, topics_for(kafka).dead_letters, lambda found: len(found) >= 1))

    assert [r.key for r in outputs] == [str(i).encode() for i in range(5)]
    predicted = [int(np.argmax(values_of(r))) for r in outputs]
    assert np.mean(np.array(predicted) == labels[:5]) >= 0.8
    headers = dict(dead.headers)
    assert dead.key == b"bad" and headers["source"] == b"telegraf"
    assert b"not a Telegraf JSON metric" in headers["kafkaml-dlq-reason"]
