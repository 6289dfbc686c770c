"""The inferencer against the real broker: specs, artifacts and inputs through Kafka, predictions out.

Where the process boundary is the point (a replica killed with SIGKILL), the
inferencer runs as the real process (``python -m services.inferencer``, no
database URL in its environment); elsewhere its ``serve`` function runs
in-process, to keep the tier fast on two cores. The broker is the session's;
no database is needed, so these tests do not use the ``settings`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.inferencer.replica import serve
from shared.events.inference import InferenceStats, InferenceStatusChanged
from shared.events.versions import MODEL_VERSION_HEADER
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import REPO, service_env
from tests.integration.inferencer.serving import (
    digits,
    keras_bytes,
    keras_digits,
    make_topics,
    produce,
    publish_model,
    read_events,
    read_records,
    running,
    serving,
    spec_for,
    statuses,
    topic_name,
    torch_digits,
    values_of,
)

pytestmark = pytest.mark.integration


def digit_inputs(count: int, offset: int = 0) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    images, _ = digits()
    return [
        (str(offset + i).encode(), images[i % len(images)].tobytes(), [("source", b"test"), ("index", str(i).encode())])
        for i in range(count)
    ]


def by_key(records: list[Any]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = defaultdict(list)
    for record in records:
        found[int(record.key)].append(record)
    return found


# --- (a) + (d): digits through a served Keras model, undecodable inputs dead-lettered ---------------


async def test_keras_digits_are_predicted_in_order_with_keys_and_headers_and_bad_inputs_are_dead_lettered(
    kafka: Settings,
) -> None:
    images, labels = digits()
    artifact = keras_digits()
    input_topic, output_topic = topic_name(kafka, "in"), topic_name(kafka, "out")
    await make_topics(kafka, (input_topic, 2), (output_topic, 2))
    spec = spec_for(kafka, artifact, input_topic=input_topic, output_topic=output_topic)
    await publish_model(kafka, spec, artifact)
    inputs = digit_inputs(len(images))
    # Wrong sizes, anywhere in the stream: dead-lettered with the reason, the stream goes on.
    bad_keys = {b"bad-1": bytes(63), b"bad-2": bytes(65)}
    inputs.insert(100, (b"bad-1", bad_keys[b"bad-1"], [("source", b"test")]))
    inputs.insert(1500, (b"bad-2", bad_keys[b"bad-2"], [("source", b"test")]))

    async with serving(kafka, spec) as replica:
        await replica.watch(read_events(kafka, running()))
        await produce(kafka, input_topic, inputs)
        outputs = await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= len(images)))
        dead = await replica.watch(read_records(kafka, topics_for(kafka).dead_letters, lambda found: len(found) >= 2))

    assert len(outputs) == len(images)
    predictions = by_key(outputs)
    assert sorted(predictions) == list(range(len(images)))
    correct = 0
    for index, (record,) in predictions.items():
        values = values_of(record)
        assert len(values) == 10 and all(isinstance(v, (int, float)) for v in values)
        # The input's headers, then the version of the model that made it (a bounded training's: 1).
        assert list(record.headers) == [
            ("source", b"test"),
            ("index", str(index).encode()),
            (MODEL_VERSION_HEADER, b"1"),
        ]
        correct += int(np.argmax(values) == labels[index])
    accuracy = correct / len(images)
    assert accuracy >= 0.90, accuracy
    # In input order per partition: the keys of each output partition only go up.
    for partition in {r.partition for r in outputs}:
        keys = [int(r.key) for r in outputs if r.partition == partition]
        assert keys == sorted(keys)

    assert {r.key for r in dead} == set(bad_keys)
    for record in dead:
        headers = dict(record.headers)
        assert record.value == bad_keys[record.key]
        assert headers["source"] == b"test"
        assert b"undecodable" in headers["kafkaml-dlq-reason"] and b"expected 64" in headers["kafkaml-dlq-reason"]
        assert headers["kafkaml-dlq-source"].startswith(input_topic.encode())

    events = await read_events(kafka, lambda found: "stopped" in statuses(found))
    assert statuses(events) == ["running", "stopped"]
    stats = [e.payload for e in events if isinstance(e, InferenceStats)]
    assert sum(s.messages for s in stats) == len(images)
    assert sum(s.errors for s in stats) == 2
    predicted: Counter[str] = Counter()
    for s in stats:
        predicted.update(s.predicted)
    assert sum(predicted.values()) == len(images) and set(predicted) <= {str(d) for d in range(10)}
    assert any(s.latency_p50_ms is not None and s.latency_p50_ms > 0 for s in stats)


# --- hostile JSON: too deep, too large; dead-lettered with the reason, the stream goes on ----------


async def test_deep_and_huge_json_values_are_dead_lettered_and_the_next_input_is_answered(kafka: Settings) -> None:
    images, labels = digits()
    artifact = keras_digits()
    input_topic, output_topic = topic_name(kafka, "in"), topic_name(kafka, "out")
    await make_topics(kafka, (input_topic, 1), (output_topic, 1))
    spec = spec_for(
        kafka,
        artifact,
        input_topic=input_topic,
        output_topic=output_topic,
        input_format="JSON",
        input_config={"data_reshape": "8 8"},
    )
    await publish_model(kafka, spec, artifact)
    deep = b"[" * 200_000 + b"]" * 200_000  # a RecursionError in the JSON parser, on main
    huge = json.dumps([0.5] * (10 * 2**20 // 5)).encode()  # over 10 MB: the embedded broker takes it
    assert len(huge) > 10 * 10**6
    normal = json.dumps(images[7].astype(float).tolist()).encode()
    inputs = [(b"deep", deep, [("source", b"test")]), (b"huge", huge, []), (b"normal", normal, [])]

    async with serving(kafka, spec) as replica:
        await replica.watch(read_events(kafka, running()))
        await produce(kafka, input_topic, inputs, max_request_size=16 * 2**20)
        [output] = await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= 1, 20))
        dead = await replica.watch(read_records(kafka, topics_for(kafka).dead_letters, lambda found: len(found) >= 2))

    assert output.key == b"normal" and int(np.argmax(values_of(output))) == labels[7]
    by_reason = {r.key: (r.value, dict(r.headers)) for r in dead}
    assert set(by_reason) == {b"deep", b"huge"}
    value, headers = by_reason[b"deep"]
    assert value == deep and headers["source"] == b"test"
    assert b"deeper than the limit" in headers["kafkaml-dlq-reason"]
    value, headers = by_reason[b"huge"]
    # Too large to copy within a producer request: dead-lettered without it, its size in the reason.
    assert value is None
    assert b"over the limit of 1.0 MiB" in headers["kafkaml-dlq-reason"]
    assert f"{len(huge)} bytes, is not copied".encode() in headers["kafkaml-dlq-reason"]
    assert headers["kafkaml-dlq-source"].startswith(input_topic.encode())


# --- (b): a replica killed with SIGKILL mid-stream loses no input ---------------------------


async def test_a_replica_killed_mid_stream_loses_no_input(kafka: Settings, tmp_path: Path) -> None:
    artifact = keras_digits()
    input_topic, output_topic = topic_name(kafka, "in"), topic_name(kafka, "out")
    await make_topics(kafka, (input_topic, 2), (output_topic, 2))
    # Small batches: many commits, so the kill lands between some and the stream is mid-way.
    spec = spec_for(kafka, artifact, input_topic=input_topic, output_topic=output_topic, max_batch=16)
    await publish_model(kafka, spec, artifact)
    env = service_env(kafka, database=False)
    assert "KAFKAML_DATABASE_URL" not in env
    count = 2400

    def start(replica: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"replica-{replica}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "services.inferencer", "--spec-file", "-", "--replica", replica],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,  # the spec, as the local launcher hands it over
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        assert process.stdin is not None
        process.stdin.write(spec.model_dump_json().encode())
        process.stdin.close()
        return process

    first = start("a")
    second: subprocess.Popen[bytes] | None = None
    try:
        await read_events(kafka, running(), timeout_s=90)
        sending = asyncio.create_task(produce(kafka, input_topic, digit_inputs(count), per_second=800))
        before = await read_records(kafka, output_topic, lambda found: len(found) >= 300)
        first.kill()
        first.wait(10)
        assert not sending.done(), "the kill should land mid-stream"
        # Started at once: its start-up overlaps the dead member's session timeout.
        second = start("b")
        await sending
        outputs = await read_records(
            kafka, output_topic, lambda found: len({int(r.key) for r in found}) >= count, timeout_s=120
        )
        assert {int(r.key) for r in outputs} == set(range(count))
        assert len(before) < count
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        events = await read_events(kafka, lambda found: "stopped" in statuses(found, "b"))
        assert statuses(events, "a") == ["running"]  # killed: it could not say anything more
        assert statuses(events, "b") == ["running", "stopped"]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


# --- (c) + (f): two replicas of a PyTorch model share the work ---------------------------------


async def test_two_replicas_of_a_pytorch_model_share_the_partitions(kafka: Settings) -> None:
    labels = digits()[1]
    artifact = torch_digits()
    input_topic, output_topic = topic_name(kafka, "in"), topic_name(kafka, "out")
    await make_topics(kafka, (input_topic, 4), (output_topic, 4))
    spec = spec_for(kafka, artifact, input_topic=input_topic, output_topic=output_topic, framework="pytorch")
    await publish_model(kafka, spec, artifact)
    count = 2000
    async with serving(kafka, spec, "r1") as one, serving(kafka, spec, "r2") as two:
        await one.watch(two.watch(read_events(kafka, running(2), timeout_s=90)))
        await produce(kafka, input_topic, digit_inputs(count))
        outputs = await one.watch(two.watch(read_records(kafka, output_topic, lambda found: len(found) >= count)))
    assert len(outputs) == count  # a rebalance before the stream began: no duplicates
    correct = sum(int(np.argmax(values_of(r)) == labels[int(r.key) % len(labels)]) for r in outputs)
    assert correct / count >= 0.90, correct / count
    events = await read_events(kafka, lambda found: statuses(found).count("stopped") >= 2)
    served = Counter[str]()
    for event in events:
        if isinstance(event, InferenceStats):
            served[event.payload.replica] += event.payload.messages
    assert served["r1"] > 0 and served["r2"] > 0, served
    assert served.total() == count


# --- (e): a distributed chain: confident predictions out, the others up to the cloud model ----------


def edge_and_cloud() -> tuple[Any, Any]:
    """An edge model ([to_upper, prediction], as upstream's examples) and the cloud model it feeds, trained jointly."""
    import keras

    keras.utils.set_random_seed(2)
    images, labels = digits()
    inputs = keras.Input((8, 8))
    to_upper = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    edge = keras.Model(inputs, [to_upper, keras.layers.Dense(10, activation="softmax")(to_upper)], name="edge")
    upper_input = keras.Input((16,))
    hidden = keras.layers.Dense(32, activation="relu")(upper_input)
    cloud = keras.Model(upper_input, keras.layers.Dense(10, activation="softmax")(hidden), name="cloud")
    tensor, edge_prediction = edge(inputs)
    joint = keras.Model(inputs, [edge_prediction, cloud(tensor)])
    joint.compile(optimizer=keras.optimizers.Adam(0.01), loss=["sparse_categorical_crossentropy"] * 2)
    joint.fit(images.astype(np.float32), [labels, labels], epochs=3, batch_size=64, verbose=0)
    return edge, cloud


async def test_a_distributed_chain_sends_unsure_inputs_up_to_the_next_model(kafka: Settings) -> None:
    edge, cloud = edge_and_cloud()
    count = 400
    images = digits()[0][:count]
    to_upper, edge_predictions = (np.asarray(a) for a in edge.predict(images.astype(np.float32), verbose=0))
    confidence = np.sort(edge_predictions.max(axis=1))
    # Half and half, with the limit between two inputs' confidences (no ties at the boundary).
    limit = float((confidence[count // 2 - 1] + confidence[count // 2]) / 2)
    goes_up = edge_predictions.max(axis=1) < limit

    source, upper, edge_out, cloud_out = (topic_name(kafka, what) for what in ("in", "up", "edge", "cloud"))
    await make_topics(kafka, (source, 2), (upper, 2), (edge_out, 2), (cloud_out, 2))
    edge_artifact, cloud_artifact = keras_bytes(edge), keras_bytes(cloud)
    edge_spec = spec_for(
        kafka, edge_artifact, input_topic=source, output_topic=edge_out, upper_topic=upper, limit=limit
    )
    cloud_spec = spec_for(
        kafka,
        cloud_artifact,
        result_id=2,
        input_topic=upper,
        output_topic=cloud_out,
        input_config={"data_type": "float32", "data_reshape": "16"},
    )
    await publish_model(kafka, edge_spec, edge_artifact)
    await publish_model(kafka, cloud_spec, cloud_artifact)

    async with serving(kafka, edge_spec, "edge") as one, serving(kafka, cloud_spec, "cloud") as two:
        await one.watch(two.watch(read_events(kafka, running(2), timeout_s=90)))
        await produce(kafka, source, digit_inputs(count))
        up = int(goes_up.sum())
        predicted = await one.watch(read_records(kafka, edge_out, lambda found: len(found) >= count - up))
        sent_up = await one.watch(read_records(kafka, upper, lambda found: len(found) >= up))
        from_cloud = await two.watch(read_records(kafka, cloud_out, lambda found: len(found) >= up))

    assert 0 < up < count
    assert sorted(int(r.key) for r in predicted) == [i for i in range(count) if not goes_up[i]]
    assert sorted(int(r.key) for r in sent_up) == [i for i in range(count) if goes_up[i]]
    for record in predicted:
        np.testing.assert_allclose(np.asarray(values_of(record)), edge_predictions[int(record.key)], atol=1e-5)
    for record in sent_up:  # raw float32, C order, the input's key and headers
        np.testing.assert_allclose(np.frombuffer(record.value, dtype=np.float32), to_upper[int(record.key)], atol=1e-5)
        assert dict(record.headers)["index"] == record.key
        assert dict(record.headers)[MODEL_VERSION_HEADER] == b"1"  # the edge model's version made it
    expected = np.asarray(cloud.predict(to_upper[goes_up], verbose=0))
    by_index = {int(i): row for i, row in zip(np.flatnonzero(goes_up), expected, strict=True)}
    assert sorted(int(r.key) for r in from_cloud) == sorted(by_index)
    for record in from_cloud:
        np.testing.assert_allclose(np.asarray(values_of(record)), by_index[int(record.key)], atol=1e-4)


# --- failures: reported, with the reason ---------------------------------------------------------


async def test_a_missing_artifact_fails_the_inference_with_the_reason(kafka: Settings) -> None:
    topic = topic_name(kafka, "in")
    await make_topics(kafka, (topic, 1))
    spec = spec_for(kafka, b"never published", input_topic=topic, output_topic=topic)
    stop = asyncio.Event()
    assert await serve(kafka, spec, "0", stop=stop, artifact_timeout_s=1.5) == "failed"
    events = await read_events(kafka, lambda found: "failed" in statuses(found))
    (failure,) = [e.payload for e in events if isinstance(e, InferenceStatusChanged)]
    assert failure.replica == "0" and failure.error is not None and "did not arrive" in failure.error
