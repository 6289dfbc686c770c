"""Upstream Kafka-ML's own example code paths against the real broker, with only the import changed:
the online MNIST training example (``OnlineRawSink``, sent in parts, ``online_close``) and the
HCOPD inference example (``AvroInference`` from an ``.avsc`` file). sklearn's digits stand in for
MNIST, which the examples download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from shared.codecs import decoder_for
from shared.control import deployment_id_from_key, parse_control
from shared.datasources import AvroInference, OnlineRawSink
from shared.stack.broker import Broker
from tests.integration.datasources.test_sinks import control_topic, read_all, unique

pytestmark = pytest.mark.integration


async def test_online_raw_sink_as_upstreams_online_mnist_example(broker: Broker) -> None:
    digits = load_digits()
    x_train, y_train = digits.images[:300].astype(np.uint8), digits.target[:300].astype(np.uint8)
    control, topic = await control_topic(broker), unique("automl")

    # examples/MNIST_RAW_format/mnist_dataset_online_training_example.py, the import changed to
    # shared.datasources (and the control topic named: the broker is shared by the tests).
    mnist = OnlineRawSink(
        boostrap_servers=broker.bootstrap_servers,
        topic=topic,
        deployment_id=1,
        description="Mnist dataset",
        validation_rate=0.1,
        control_topic=control,
    )
    for x, y in zip(x_train[:100], y_train[:100], strict=True):
        mnist.send(data=x, label=y)
    mnist.flush()
    # The announcement is there while the stream goes on (the trainer may start now).
    [(key, value)] = await read_all(broker, control, expected=1)
    assert deployment_id_from_key(key) == 1 and key == bytes([1])
    for x, y in zip(x_train[100:], y_train[100:], strict=True):
        mnist.send(data=x, label=y)
    mnist.online_close()

    # Still exactly one control message: the online form, naming the bare topic.
    [(key, value)] = await read_all(broker, control, expected=1, timeout_s=2)
    assert json.loads(value or b"") == {
        "topic": topic,
        "unsupervised_topic": None,
        "input_format": "RAW",
        "description": "Mnist dataset",
        "input_config": {"data_type": "uint8", "label_type": "uint8", "data_reshape": "8 8", "label_reshape": "1"},
        "validation_rate": 0.1,
        "test_rate": 0,
        "total_msg": None,
        "dataset_restrictions": {},
        "incremental": True,
    }
    message = parse_control(value)
    records = await read_all(broker, topic, expected=len(x_train))
    assert len(records) == len(x_train)
    sent = {(y.tobytes(), x.tobytes()) for x, y in zip(x_train, y_train, strict=True)}
    assert set(records) == sent
    decoded = decoder_for(message.input_format, message.input_config).decode(
        [v for _, v in records], [k for k, _ in records]
    )
    assert decoded.bad == [] and decoded.x.shape == (300, 8, 8) and decoded.x.dtype == np.uint8


async def test_avro_inference_as_upstreams_hcopd_example(broker: Broker, tmp_path: Path) -> None:
    schema = {
        "namespace": "data.ertis.uma.es",
        "type": "record",
        "name": "HCOPD",
        "fields": [
            {"name": "gender", "type": "float"},
            {"name": "age", "type": "float"},
            {"name": "smoking", "type": "float"},
        ],
    }
    (tmp_path / "data_scheme.avsc").write_text(json.dumps(schema))
    features = load_breast_cancer().data[:, :3]  # float64 columns, as pandas hands them to upstream
    input_topic = unique("hcopd-in")
    items_to_predict = 10

    # examples/HCOPD_Avro_format/HCOPD_inference.py, the import changed to shared.datasources.
    hcopd = AvroInference(
        boostrap_servers=broker.bootstrap_servers,
        topic=input_topic,
        data_scheme_filename=str(tmp_path / "data_scheme.avsc"),
    )
    for i in range(0, items_to_predict):
        data = {"gender": features[i][0], "age": features[i][1], "smoking": features[i][2]}
        hcopd.send(data)
    hcopd.close()

    records = await read_all(broker, input_topic, expected=items_to_predict)
    assert len(records) == items_to_predict and all(key is None for key, _ in records)
    # As the inferencer decodes an AVRO inference's input (input_config = the data scheme).
    decoded = decoder_for("AVRO", {"data_scheme": json.dumps(schema)}).decode([v for _, v in records])
    assert decoded.bad == []
    assert sorted(map(tuple, decoded.x.tolist())) == sorted(
        map(tuple, features[:items_to_predict].astype(np.float32).tolist())
    )
