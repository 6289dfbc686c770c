"""Version switches against the real broker: a replica changes the version it serves without stopping.

Two tiny models that answer every input with a constant (version 1: class 0, version 2:
class 1), so each prediction shows which model made it, beside the header that says so.
The switch is published as the orchestrator publishes it: the version's chunks on the
artifacts topic, then a ``SwitchModelVersion`` on the jobs topic, keyed by inference id
and signed with the inference's key (the one in its spec).
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Any

import numpy as np
import pytest

from shared.artifacts import chunk_artifact
from shared.events import decode
from shared.events.inference import InferenceStatusChanged, ServeSpec
from shared.events.signing import Key, Keyring, inference_signer
from shared.events.versions import MODEL_VERSION_HEADER, InferenceVersionChanged, SwitchModelVersion, VersionSwitch
from shared.kafka import Producer
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import BUS_KEY
from tests.integration.inferencer.serving import (
    digits,
    keras_bytes,
    make_topics,
    produce,
    publish_model,
    read_records,
    running,
    serving,
    spec_for,
    statuses,
    topic_name,
)

pytestmark = pytest.mark.integration


@cache
def constant_model(answer: int) -> bytes:
    """A Keras model whose prediction for every input is one-hot ``answer`` of 2."""
    import keras

    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(2)])
    kernel, bias = model.layers[-1].get_weights()
    bias[:] = 0.0
    bias[answer] = 1.0
    model.layers[-1].set_weights([np.zeros_like(kernel), bias])
    return keras_bytes(model)


def version_of(record: Any) -> int:
    """The version the header names, checked against the prediction itself."""
    (header,) = [value for name, value in record.headers if name == MODEL_VERSION_HEADER]
    version = int(header.decode("ascii"))
    assert json.loads(record.value)["values"] == ([1, 0] if version == 1 else [0, 1]), (version, record.value)
    return version


def inputs(count: int, offset: int = 0) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    images = digits()[0]
    return [(str(offset + i).encode(), images[i % len(images)].tobytes(), []) for i in range(count)]


async def setup(kafka: Settings, partitions: int = 2) -> tuple[ServeSpec, str]:
    """Topics, version 1's spec (with the inference's signing key) and chunks; (spec, output topic)."""
    input_topic, output_topic = topic_name(kafka, "in"), topic_name(kafka, "out")
    await make_topics(kafka, (input_topic, partitions), (output_topic, partitions))
    spec = spec_for(kafka, constant_model(0), input_topic=input_topic, output_topic=output_topic, inference_id=7)
    key = Keyring([BUS_KEY]).signing_key(inference_signer(spec.job_id, spec.inference_id))
    spec = spec.model_copy(update={"signing_key": key})
    await publish_model(kafka, spec, constant_model(0))
    return spec, output_topic


async def switch(
    kafka: Settings, spec: ServeSpec, version: int, artifact: bytes, *, key: Key | None = None, chunks_sent: bool = True
) -> None:
    """The version's chunks (unless not ``chunks_sent``), then the switch signed with ``key``
    (default: the inference's own)."""
    chunks = chunk_artifact(spec.result_id, artifact)
    assert spec.signing_key is not None
    async with Producer(kafka) as producer:
        for chunk in chunks if chunks_sent else ():
            await producer.publish(chunk)
        payload = VersionSwitch(
            inference_id=spec.inference_id,
            result_id=spec.result_id,
            version=version,
            sha256=chunks[0].payload.sha256,
            format="keras",
        )
        await producer.publish(SwitchModelVersion(payload=payload), signer=key or Key.of(spec.signing_key))


async def version_changes(kafka: Settings, count: int) -> list[tuple[int, int]]:
    """(record timestamp, version) of the first ``count`` InferenceVersionChanged."""

    def changes(records: list[Any]) -> list[tuple[int, int]]:
        found = [(r.timestamp, decode(r.value)) for r in records]
        return [(t, m.payload.version) for t, m in found if isinstance(m, InferenceVersionChanged)]

    events = topics_for(kafka).events
    return changes(await read_records(kafka, events, lambda found: len(changes(found)) >= count, 30))[:count]


async def test_a_replica_switches_to_v2_and_back_while_inputs_stream_each_answered_once(kafka: Settings) -> None:
    spec, output_topic = await setup(kafka)
    count = 2400  # 8 s at 300 msg/s: both switches land mid-stream
    async with serving(kafka, spec, "r") as replica:
        await replica.watch(read_records(kafka, topics_for(kafka).events, running_records, 60))
        sending = asyncio.create_task(produce(kafka, spec.input_topic, inputs(count), per_second=300))
        await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= 300))
        await switch(kafka, spec, 2, constant_model(1))  # promote
        [(promoted_at, promoted)] = await replica.watch(version_changes(kafka, 1))
        await replica.watch(
            read_records(kafka, output_topic, lambda found: sum(version_of(r) == 2 for r in found) >= 300)
        )
        await switch(kafka, spec, 1, constant_model(0))  # roll back
        changes = await replica.watch(version_changes(kafka, 2))
        assert not sending.done(), "both switches should land while inputs stream"
        await sending
        outputs = await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= count))

    assert promoted == 2 and [version for _, version in changes] == [2, 1]
    rolled_back_at = changes[1][0]
    # Exactly once: every key answered, none twice (no duplicate from the switches).
    keys = sorted(int(r.key) for r in outputs)
    assert keys == list(range(count))
    versions = [version_of(r) for r in outputs]
    assert {1, 2} == set(versions)
    # Within one micro-batch: each output made after a change names the version it changed to.
    for record, version in zip(outputs, versions, strict=True):
        if record.timestamp > rolled_back_at:
            assert version == 1, record
        elif promoted_at < record.timestamp < rolled_back_at:
            assert version == 2, record
        elif record.timestamp < promoted_at:
            assert version == 1, record
    assert sum(1 for r in outputs if r.timestamp > rolled_back_at) > 0


def running_records(records: list[Any]) -> bool:
    return bool(running()([decode(r.value) for r in records]))


def stopped(records: list[Any]) -> bool:
    return "stopped" in statuses([decode(r.value) for r in records])


def failed_switches(records: list[Any]) -> list[str]:
    """The errors of the ``running`` statuses among ``records`` (a switch that did not happen)."""
    found = [decode(r.value) for r in records]
    return [
        m.payload.error
        for m in found
        if isinstance(m, InferenceStatusChanged) and m.payload.status == "running" and m.payload.error
    ]


async def test_a_forged_switch_is_dead_lettered_and_a_failed_load_keeps_the_version(kafka: Settings) -> None:
    spec, output_topic = await setup(kafka, partitions=1)
    async with serving(kafka, spec, "r") as replica:
        await replica.watch(read_records(kafka, topics_for(kafka).events, running_records, 60))
        # Signed by the same signer name with another stack's key: it does not verify.
        other = Keyring(["another-bus-key"]).key(inference_signer(spec.job_id, spec.inference_id))
        await switch(kafka, spec, 2, constant_model(1), key=other)
        [dead] = await replica.watch(read_records(kafka, topics_for(kafka).dead_letters, lambda found: len(found) >= 1))
        reason = dict(dead.headers)["kafkaml-dlq-reason"].decode()
        assert "does not verify" in reason and "unknown key" in reason, reason
        assert dict(dead.headers)["kafkaml-dlq-source"].startswith(topics_for(kafka).jobs.encode())
        # Signed properly, but the bytes are no model: the load fails, version 1 goes on serving.
        await switch(kafka, spec, 3, b"not a keras file")

        [error] = failed_switches(
            await replica.watch(read_records(kafka, topics_for(kafka).events, lambda f: bool(failed_switches(f)), 30))
        )
        assert "could not switch to version 3, still serving version 1" in error, error
        await produce(kafka, spec.input_topic, inputs(50))
        outputs = await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= 50))
    assert [version_of(r) for r in outputs] == [1] * 50
    # Everything the replica said, up to its "stopped": no version change among it.
    events = [decode(r.value) for r in await read_records(kafka, topics_for(kafka).events, stopped, 30)]
    assert not [m for m in events if isinstance(m, InferenceVersionChanged)]


async def test_a_replica_started_after_a_switch_serves_the_switched_version(kafka: Settings) -> None:
    spec, output_topic = await setup(kafka, partitions=1)
    await switch(kafka, spec, 2, constant_model(1))
    async with serving(kafka, spec, "late") as replica:
        [(_, version)] = await replica.watch(version_changes(kafka, 1))
        await replica.watch(read_records(kafka, topics_for(kafka).events, running_records, 60))
        await produce(kafka, spec.input_topic, inputs(50))
        outputs = await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= 50))
    assert version == 2
    assert [version_of(r) for r in outputs] == [2] * 50


async def test_a_replica_started_after_a_switch_whose_model_is_gone_serves_the_deployments_version(
    kafka: Settings,
) -> None:
    spec, output_topic = await setup(kafka, partitions=1)
    await switch(kafka, spec, 2, constant_model(1), chunks_sent=False)  # version 2's chunks are not there
    async with serving(kafka, spec, "late") as replica:
        found = await replica.watch(
            read_records(kafka, topics_for(kafka).events, lambda f: bool(failed_switches(f)), 60)
        )
        [error] = failed_switches(found)
        assert "could not switch to version 2, serving version 1 (the deployment's)" in error, error
        assert "none of its chunks" in error, error
        await produce(kafka, spec.input_topic, inputs(20))
        outputs = await replica.watch(read_records(kafka, output_topic, lambda found: len(found) >= 20))
    assert [version_of(r) for r in outputs] == [1] * 20
