"""Incremental training throughput against bounded training on the same data, both through the real worker.

    .venv/bin/python tests/perf/bench_incremental.py                      # Keras, 18,000 samples
    .venv/bin/python tests/perf/bench_incremental.py --framework pytorch --window 1000

The scikit-learn digits (8x8, repeated to ``--samples``) are sent once to one topic of an
embedded broker (not timed). Then, on that topic, through ``services.trainer.worker.train_job``
in this process (TensorFlow or PyTorch imported and warmed up first, so neither side pays it):

* bounded: a control message with the ranges, one epoch, validation rate 0.1; the clock runs
  from the job's start to its ``TrainingFinished``;
* incremental: an online control message (the bare topic, ``incremental: true``), windows of
  ``--window`` samples, one epoch each, validation rate 0.1; the clock runs from the job's
  start to the last ``WindowCompleted`` (the stream timeout that ends the job is not counted).

Each side trains every sample once (the incremental one also evaluates each window before
training on it and saves the model after every window). Printed: samples/s of each and the
ratio incremental/bounded. Keep ``--samples`` a multiple of ``--window``: a last, partial window
closes only when the stream has been quiet for the stream timeout. Not a timed test (not
collected by pytest); noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from services.trainer.worker import train_job, warm_up  # noqa: E402
from shared.control import key_for_deployment  # noqa: E402
from shared.events import decode  # noqa: E402
from shared.events.signing import Keyring, job_signer  # noqa: E402
from shared.events.training import IncrementalParams, JobModel, JobSpec  # noqa: E402
from shared.events.versions import WindowCompleted  # noqa: E402
from shared.kafka import Producer, create_topics, ensure_topics, make_consumer  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.stack.broker import start_broker  # noqa: E402
from shared.topics import TopicSpec, topics_for  # noqa: E402

EXAMPLES = REPO / "examples" / "models"
RAW = {"data_type": "uint8", "label_type": "uint8", "data_reshape": "8 8", "label_reshape": "1"}


def digits(samples: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    repeat = -(-samples // len(data.target))
    x = np.tile(data.images.astype(np.uint8), (repeat, 1, 1))[:samples]
    y = np.tile(data.target.astype(np.uint8), repeat)[:samples]
    return x, y


async def send(settings: Settings, topic: str, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> str:
    """The samples, acknowledged; the ranges of the bounded control message."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.brokers, linger_ms=5)
    await producer.start()
    spans: dict[int, list[int]] = {}
    try:
        futures = [await producer.send(topic, a.tobytes(), key=bytes([int(b)])) for a, b in zip(x, y, strict=True)]
        for ack in await asyncio.gather(*futures):
            span = spans.setdefault(ack.partition, [ack.offset, ack.offset])
            span[0], span[1] = min(span[0], ack.offset), max(span[1], ack.offset)
    finally:
        await producer.stop()
    return ",".join(f"{topic}:{p}:{s}:{e + 1}" for p, (s, e) in sorted(spans.items()))


async def announce(settings: Settings, deployment_id: int, value: dict[str, Any]) -> None:
    async with Producer(settings) as producer:
        await producer.send(settings.control_topic, json.dumps(value).encode(), key=key_for_deployment(deployment_id))


def spec_for(settings: Settings, deployment_id: int, framework: str, **extra: Any) -> JobSpec:
    name = "keras_digits.json" if framework == "tensorflow" else "pytorch_digits.json"
    example = json.loads((EXAMPLES / name).read_text())
    job_id = f"bench-{uuid.uuid4().hex[:8]}"
    model = JobModel(result_id=deployment_id, model_id=1, name="m", code=example["code"], imports=example["imports"])
    fit = {"epochs": 1} if framework == "tensorflow" else {"max_epochs": 1}
    key = Keyring.of(settings).signing_key(job_signer(job_id, [deployment_id]))
    return JobSpec(
        job_id=job_id, deployment_id=deployment_id, framework=framework, models=[model], batch_size=32, fit=fit,
        evaluate={}, confusion_matrix=False, signing_key=key, data_timeout_s=60, **extra,
    )  # fmt: skip


async def last_window_at(settings: Settings, result_id: int) -> float:
    """When the last WindowCompleted of ``result_id`` was published (wall clock, s)."""
    consumer = make_consumer(settings, topics_for(settings).events, group_id=None)
    await consumer.start()
    latest = 0.0
    try:
        idle = 0
        while idle < 4:
            batches = await consumer.getmany(timeout_ms=500)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    message = decode(record.value)
                    if isinstance(message, WindowCompleted) and message.payload.result_id == result_id:
                        latest = max(latest, message.occurred_at.timestamp())
    finally:
        await consumer.stop()
    return latest


async def measure(settings: Settings, framework: str, samples: int, window: int) -> tuple[float, float]:
    await ensure_topics(settings)
    topic = f"{settings.topic_prefix}.bench-data"
    await create_topics(settings, [TopicSpec(topic, 2)])
    x, y = digits(samples)
    ranges = await send(settings, topic, x, y)
    common = {"input_format": "RAW", "input_config": RAW, "validation_rate": 0.1, "test_rate": 0.0}

    await announce(settings, 1, {"topic": ranges, "total_msg": samples, **common})
    started = time.monotonic()
    assert await train_job(settings, spec_for(settings, 1, framework)) == {1: "finished"}
    bounded = time.monotonic() - started

    await announce(settings, 2, {"topic": topic, "total_msg": None, "incremental": True, **common})
    params = IncrementalParams(window_samples=window, stream_timeout_s=3)
    begun = time.time()
    assert await train_job(settings, spec_for(settings, 2, framework, incremental=params)) == {2: "finished"}
    incremental = await last_window_at(settings, 2) - begun
    return samples / bounded, samples / incremental


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("tensorflow", "pytorch"), default="tensorflow")
    parser.add_argument("--samples", type=int, default=18_000)
    parser.add_argument("--window", type=int, default=2_000)
    args = parser.parse_args()
    warm_up(args.framework)
    home = Path(tempfile.mkdtemp(prefix="kml-bench-inc-", dir="/tmp"))
    try:
        with start_broker(home) as broker:
            prefix = f"bench{uuid.uuid4().hex[:6]}"
            settings = Settings(
                home=home, bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix,
                control_topic=f"{prefix}.control", bus_key="bench-bus-key",
            )  # fmt: skip
            bounded, incremental = asyncio.run(measure(settings, args.framework, args.samples, args.window))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"{args.framework}, {args.samples:,} digits, 1 epoch, windows of {args.window:,}")
    print(f"bounded:     {bounded:10,.0f} samples/s")
    print(f"incremental: {incremental:10,.0f} samples/s")
    print(f"ratio incremental/bounded: {incremental / bounded:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
