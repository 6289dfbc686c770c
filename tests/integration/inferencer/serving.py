"""Helpers for the inferencer's integration tests and its benchmark (tests/perf/bench_inference.py).

Models are trained here, in-process, in a few seconds (the trainer's own
tests cover training from Kafka); what matters to the inferencer is a real
``.keras`` file or state dict, published as the trainer publishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from aiokafka import AIOKafkaProducer
from sklearn.datasets import load_digits

from services.inferencer.replica import serve
from shared.artifacts import chunk_artifact
from shared.events import Envelope, decode
from shared.events.inference import InferenceStatusChanged, ServeModel, ServeSpec
from shared.kafka import Producer, create_topics, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import TopicSpec, topics_for

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "models"
RAW_DIGITS = {"data_type": "uint8", "data_reshape": "8 8"}

Headers = list[tuple[str, bytes]]
T = TypeVar("T")


@cache
def digits() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    data = load_digits()
    return data.images.astype(np.uint8), data.target.astype(np.int64)


def keras_bytes(model: Any) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


@cache
def keras_digits(epochs: int = 30) -> bytes:
    """Upstream's README model (Flatten, Dense 128, Dense 10 softmax), trained on all of digits."""
    import keras

    keras.utils.set_random_seed(1)
    images, labels = digits()
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    model.fit(images.astype(np.float32), labels, epochs=epochs, batch_size=64, verbose=0)
    return keras_bytes(model)


PYTORCH_DIGITS: dict[str, str] = json.loads((EXAMPLES / "pytorch_digits.json").read_text())


@cache
def torch_digits(epochs: int = 30) -> bytes:
    """Upstream's README PyTorch model, built from its code as the inferencer does, trained briefly."""
    import torch

    from shared.events.catalog import ModelDefinition
    from shared.usercode import build_model

    torch.manual_seed(1)
    definition = ModelDefinition(
        name="digits-pytorch", framework="pytorch", code=PYTORCH_DIGITS["code"], imports=PYTORCH_DIGITS["imports"]
    )
    model, _ = build_model(definition)
    images, labels = digits()
    x = torch.from_numpy(images.astype(np.float32))
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    loss_fn = model.loss_fn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's nn.Softmax() without dim: not ours to fix
        for _ in range(epochs):
            for start in range(0, len(x), 64):
                optimizer.zero_grad()
                loss = loss_fn(model(x[start : start + 64]), y[start : start + 64])
                loss.backward()
                optimizer.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def spec_for(
    settings: Settings,
    artifact: bytes,
    *,
    input_topic: str,
    output_topic: str,
    result_id: int = 1,
    framework: str = "tensorflow",
    **overrides: Any,
) -> ServeSpec:
    digest = chunk_artifact(result_id, artifact)[0].payload.sha256
    values: dict[str, Any] = {
        "job_id": f"serve-{uuid.uuid4().hex[:8]}",
        "inference_id": result_id,
        "result_id": result_id,
        "framework": framework,
        "code": "model = None" if framework == "tensorflow" else PYTORCH_DIGITS["code"],
        "imports": "" if framework == "tensorflow" else PYTORCH_DIGITS["imports"],
        "artifact_sha256": digest,
        "artifact_format": "keras" if framework == "tensorflow" else "pt",
        "input_topic": input_topic,
        "output_topic": output_topic,
        "input_format": "RAW",
        "input_config": RAW_DIGITS,
        "group_id": f"{settings.topic_prefix}.inference-{result_id}",
        "stats_interval_s": 1.0,
        **overrides,
    }
    return ServeSpec.model_validate(values)


async def publish_model(settings: Settings, spec: ServeSpec, artifact: bytes) -> None:
    """The artifact's chunks on the artifacts topic and the spec on the jobs topic, as the orchestrator sends them."""
    async with Producer(settings) as producer:
        for chunk in chunk_artifact(spec.result_id, artifact):
            await producer.publish(chunk)
        await producer.publish(ServeModel(payload=spec))


async def make_topics(settings: Settings, *names_and_partitions: tuple[str, int]) -> None:
    await ensure_topics(settings)
    await create_topics(settings, [TopicSpec(name, partitions) for name, partitions in names_and_partitions])


def topic_name(settings: Settings, what: str) -> str:
    return f"{settings.topic_prefix}.{what}-{uuid.uuid4().hex[:6]}"


async def produce(
    settings: Settings,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes, Headers]],
    *,
    per_second: float | None = None,
    max_request_size: int = 8 * 2**20,
) -> None:
    """Sends (key, value, headers); paced at ``per_second`` when given, else as fast as acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.brokers, linger_ms=2, max_request_size=max_request_size)
    await producer.start()
    try:
        futures = []
        started = time.monotonic()
        for index, (key, value, headers) in enumerate(records):
            if per_second is not None:
                delay = started + index / per_second - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            futures.append(await producer.send(topic, value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_records(
    settings: Settings,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
    convert: Callable[[Any], Any] = lambda record: record,
) -> list[Any]:
    """Reads ``topic`` from the beginning (no group), ``convert``ing each record, until ``until(found)`` holds."""
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not until(found):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out on {topic} with {len(found)} records")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(convert(r) for r in records)
    finally:
        await consumer.stop()
    return found


async def read_events(
    settings: Settings, until: Callable[[list[Envelope]], bool], timeout_s: float = 60.0
) -> list[Envelope]:
    return await read_records(settings, topics_for(settings).events, until, timeout_s, lambda r: decode(r.value))


def values_of(record: Any) -> list[float]:
    document = json.loads(record.value)
    assert set(document) == {"values"}, document
    values: list[float] = document["values"]
    return values


class Replica:
    """``serve`` running in-process; :meth:`watch` fails fast when it ends while a test waits."""

    def __init__(self, settings: Settings, spec: ServeSpec, name: str) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(serve(settings, spec, name, stop=self.stop, artifact_timeout_s=30))

    async def watch(self, awaitable: Awaitable[T]) -> T:
        waiting = asyncio.ensure_future(awaitable)
        await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            raise AssertionError(f"the replica ended early: {self.task.result()}")
        return waiting.result()


@contextlib.asynccontextmanager
async def serving(settings: Settings, spec: ServeSpec, name: str = "0") -> AsyncIterator[Replica]:
    """Runs ``serve`` in-process until the block ends; then stops it and checks it stopped cleanly."""
    replica = Replica(settings, spec, name)
    try:
        yield replica
    finally:
        replica.stop.set()
        status = await asyncio.wait_for(replica.task, 30)
    assert status == "stopped"


def statuses(events: list[Envelope], replica: str | None = None) -> list[str]:
    return [
        e.payload.status
        for e in events
        if isinstance(e, InferenceStatusChanged) and (replica is None or e.payload.replica == replica)
    ]


def running(count: int = 1) -> Any:
    return lambda events: statuses(events).count("running") >= count
