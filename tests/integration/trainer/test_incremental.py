"""The incremental trainer against the real broker, through the real worker (in-process and as a process).

The data set is sent the way upstream's online example sends it: in parts, with pauses, to a
topic announced once by a bare-name control message (``incremental: true``, ``total_msg: null``).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from services.trainer.data.window import StreamReader, WindowRule
from services.trainer.worker import train_job
from shared.events import Envelope
from shared.events.signing import Keyring, job_signer
from shared.events.training import ArtifactChunk, IncrementalParams, JobSpec, TrainingFailed, TrainingFinished
from shared.events.versions import ModelVersionPublished, WindowCompleted
from shared.settings import Settings
from shared.topics import topics_for
from tests.integration.trainer.test_worker import (
    DIGIT_IMAGES,
    DIGIT_LABELS,
    PYTORCH_DIGITS,
    RAW_DIGITS,
    data_topic,
    job,
    model,
    of_type,
    produce,
    read_all,
    send_control,
    start_trainer,
    topics,
)

__all__ = ["topics"]  # the fixture, imported

pytestmark = pytest.mark.integration

TINY_KERAS = """\
model = tf.keras.Sequential([
    tf.keras.Input(shape=(8, 8)),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Rescaling(1 / 16),
    tf.keras.layers.Dense(32, activation="relu"),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
"""


def online_control(topic: str) -> dict[str, Any]:
    """Upstream's OnlineRawSink announcement: the bare topic, no ranges, no total."""
    return {
        "topic": topic,
        "input_format": "RAW",
        "input_config": RAW_DIGITS,
        "validation_rate": 0.1,
        "test_rate": 0,
        "total_msg": None,
        "incremental": True,
        "description": "digits, online",
    }


def signed(spec: JobSpec, settings: Settings) -> JobSpec:
    """The spec with its job key, as the orchestrator makes it (checkpoints are verified with it)."""
    key = Keyring.of(settings).signing_key(job_signer(spec.job_id, [m.result_id for m in spec.models]))
    return spec.model_copy(update={"signing_key": key})


async def send_part(settings: Settings, topic: str, start: int, end: int) -> None:
    records: list[tuple[bytes | None, bytes]] = [
        (bytes([int(label)]), image.tobytes())
        for image, label in zip(DIGIT_IMAGES[start:end], DIGIT_LABELS[start:end], strict=True)
    ]
    await produce(settings, topic, records)


def windows(messages: list[Envelope], result_id: int) -> list[Any]:
    """The windows reported, one per number (a window re-reported after a restart must be identical)."""
    found: dict[int, Any] = {}
    for event in of_type(messages, WindowCompleted, result_id):
        payload = event.payload
        if payload.window in found:
            assert found[payload.window].offsets == payload.offsets, f"window {payload.window} trained twice"
            continue
        found[payload.window] = payload
    numbers = sorted(found)
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    return [found[n] for n in numbers]


def check_chained(reported: list[Any], total: int) -> None:
    """Each partition's spans follow one another exactly, and all records are covered once."""
    ends: dict[int, int] = {}
    covered = 0
    for payload in reported:
        for span in payload.offsets:
            assert span.start == ends.get(span.partition, span.start), (payload.window, span, ends)
            assert span.end > span.start
            ends[span.partition] = span.end
            covered += span.end - span.start
    assert covered == total, (covered, total)


def outcome(settings: Settings, result_id: int, timeout_s: float = 60) -> Any:
    def done(messages: list[Envelope]) -> bool:
        return any(
            isinstance(m, (TrainingFinished, TrainingFailed)) and m.payload.result_id == result_id for m in messages
        )

    return read_all(settings, topics_for(settings).events, done, timeout_s)


async def test_keras_digits_in_three_parts_make_versions_and_learn(topics: Settings) -> None:
    settings = topics
    topic = await data_topic(settings)
    await send_control(settings, 120, online_control(topic))
    params = IncrementalParams(window_samples=300, stream_timeout_s=4, monitoring_metric="accuracy")
    spec = signed(job(120, [model(1201, {"code": TINY_KERAS})], fit={"epochs": 3}, incremental=params), settings)
    training = asyncio.create_task(train_job(settings, spec))
    third = len(DIGIT_LABELS) // 3
    for part in range(3):
        await send_part(settings, topic, part * third, len(DIGIT_LABELS) if part == 2 else (part + 1) * third)
        await asyncio.sleep(1.5)
    assert await asyncio.wait_for(training, 90) == {1201: "finished"}

    messages = await outcome(settings, 1201, 10)
    reported = windows(messages, 1201)
    check_chained(reported, len(DIGIT_LABELS))
    accuracy = [w.prequential["accuracy"] for w in reported]
    print("keras incremental prequential accuracy:", [round(a, 2) for a in accuracy])
    assert accuracy[-1] > accuracy[0] + 0.3
    versions = of_type(messages, ModelVersionPublished, 1201)
    assert len(versions) >= 2 and [v.payload.version for v in versions] == list(range(1, len(versions) + 1))
    assert [w.version for w in reported if w.version is not None] == [v.payload.version for v in versions]
    (finished,) = of_type(messages, TrainingFinished, 1201)
    assert finished.payload.artifact.sha256 == versions[-1].payload.sha256


async def test_a_window_takes_its_share_from_every_partition_of_a_backlog(topics: Settings) -> None:
    """A topic keyed by label keeps some labels on each partition: a window drawn from one
    partition's backlog alone would hold only those labels."""
    from aiokafka import AIOKafkaProducer

    settings = topics
    topic = await data_topic(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.brokers, linger_ms=5)
    await producer.start()
    try:
        sends = [await producer.send(topic, bytes([p]), partition=p) for p in (0, 1) for _ in range(400 - 250 * p)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    reader = StreamReader(settings, topic, "job-share")
    await reader.start({}, timeout_s=10)
    try:
        counts = []
        while not reader.idle:
            window = await reader.read(WindowRule(samples=100, seconds=None), idle_timeout_s=2)
            counts.append([window.values.count(bytes([p])) for p in (0, 1)])
    finally:
        await reader.stop()
    # 400 records on partition 0, 150 on partition 1: halves while both have some (the record that
    # woke the reader can tip one by one), then the rest.
    assert all(abs(a - b) <= 2 for a, b in counts[:3]), counts
    assert sum(c[0] for c in counts) == 400 and sum(c[1] for c in counts) == 150, counts


async def test_pytorch_incremental_publishes_a_version_per_window(topics: Settings) -> None:
    import torch

    torch.manual_seed(0)
    settings = topics
    topic = await data_topic(settings)
    await send_control(settings, 121, online_control(topic))
    params = IncrementalParams(window_samples=600, stream_timeout_s=3)
    spec = signed(
        job(121, [model(1211, PYTORCH_DIGITS)], "pytorch", fit={"max_epochs": 1}, batch_size=16, incremental=params),
        settings,
    )
    training = asyncio.create_task(train_job(settings, spec))
    await send_part(settings, topic, 0, len(DIGIT_LABELS))
    # Generous: on a busy two-core machine PyTorch's first import beside TensorFlow takes a while.
    assert await asyncio.wait_for(training, 120) == {1211: "finished"}
    messages = await outcome(settings, 1211, 10)
    reported = windows(messages, 1211)
    check_chained(reported, len(DIGIT_LABELS))
    assert len(reported) == 3 and {"accuracy", "loss"} <= set(reported[0].prequential)
    assert [w.version for w in reported] == [1, 2, 3]
    (finished,) = of_type(messages, TrainingFinished, 1211)
    assert finished.payload.artifact.format == "pt"


async def test_a_killed_trainer_resumes_after_its_last_window(topics: Settings, tmp_path: Path) -> None:
    settings = topics
    topic = await data_topic(settings)
    await send_control(settings, 122, online_control(topic))
    params = IncrementalParams(window_samples=300, stream_timeout_s=6)
    spec = signed(
        job(122, [model(1221, {"code": TINY_KERAS})], fit={"epochs": 1}, incremental=params),
        settings,
    )
    events_topic = topics_for(settings).events
    with (tmp_path / "first.log").open("wb") as log:
        first = await start_trainer(settings, spec, log, "--framework", "tensorflow")
        try:
            await send_part(settings, topic, 0, 900)
            await read_all(settings, events_topic, lambda m: len(of_type(m, WindowCompleted, 1221)) >= 1, 60)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
    await send_part(settings, topic, 900, len(DIGIT_LABELS))
    with (tmp_path / "second.log").open("wb") as log:
        second = await start_trainer(settings, spec, log, "--framework", "tensorflow")
        try:
            code = await asyncio.wait_for(second.wait(), 90)
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
    output = (tmp_path / "second.log").read_text()
    assert code == 0, output
    assert "resuming after window" in output, output
    messages = await outcome(settings, 1221, 10)
    reported = windows(messages, 1221)
    check_chained(reported, len(DIGIT_LABELS))
    assert of_type(messages, TrainingFinished, 1221)


async def test_a_checkpoint_signed_by_another_job_is_not_resumed_from(topics: Settings) -> None:
    from shared.artifacts import chunk_artifact
    from shared.events.signing import Key
    from shared.events.training import IncrementalState
    from shared.kafka import Producer

    settings = topics
    topic = await data_topic(settings)
    # A checkpoint for our result, far ahead in the stream, signed by a key that is not this job's.
    other = Keyring.of(settings).signing_key(job_signer("job-other", [1231]))
    forged = chunk_artifact(1231, b"not a model")[0]
    state = IncrementalState(window=5, topic=topic, next_offsets={0: 10_000, 1: 10_000})
    async with Producer(settings) as producer:
        await producer.publish(
            ArtifactChunk(payload=forged.payload.model_copy(update={"state": state, "purpose": "checkpoint"})),
            signer=Key.of(other),
        )
    await send_control(settings, 123, online_control(topic))
    await send_part(settings, topic, 0, 600)
    params = IncrementalParams(window_samples=300, stream_timeout_s=2)
    spec = signed(job(123, [model(1231, {"code": TINY_KERAS})], fit={"epochs": 1}, incremental=params), settings)
    assert await asyncio.wait_for(train_job(settings, spec), 60) == {1231: "finished"}
    reported = windows(await outcome(settings, 1231, 10), 1231)
    assert [w.window for w in reported] == [1, 2]
    check_chained(reported, 600)


async def test_a_monitored_metric_the_model_lacks_fails_naming_it(topics: Settings) -> None:
    settings = topics
    topic = await data_topic(settings)
    await send_control(settings, 124, online_control(topic))
    await send_part(settings, topic, 0, 300)
    params = IncrementalParams(window_samples=300, stream_timeout_s=2, monitoring_metric="precision")
    spec = signed(job(124, [model(1241, {"code": TINY_KERAS})], fit={"epochs": 1}, incremental=params), settings)
    assert await asyncio.wait_for(train_job(settings, spec), 60) == {1241: "failed"}
    (failed,) = of_type(await outcome(settings, 1241, 10), TrainingFailed, 1241)
    assert "monitoring_metric 'precision'" in failed.payload.error and "accuracy" in failed.payload.error
    assert of_type(await outcome(settings, 1241, 10), WindowCompleted, 1241) == []


async def test_a_bare_topic_for_a_bounded_deployment_fails_saying_how_to_stream(topics: Settings) -> None:
    settings = topics
    topic = await data_topic(settings)
    await send_control(settings, 125, {**online_control(topic), "incremental": False})
    spec = signed(job(125, [model(1251, {"code": TINY_KERAS})]), settings)
    assert await asyncio.wait_for(train_job(settings, spec), 60) == {1251: "failed"}
    (failed,) = of_type(await outcome(settings, 1251, 10), TrainingFailed, 1251)
    assert "deploy with `incremental`" in failed.payload.error, failed.payload.error
