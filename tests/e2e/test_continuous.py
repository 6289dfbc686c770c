"""End to end: continuous learning as a user runs it, through `kafkaml up --detach`.

Upstream's online example: the digits go through ``OnlineRawSink`` in three parts with pauses
to an incremental deployment that runs indefinitely (no stream timeout), a version per window.
An inference that follows the latest version is fed a steady stream of keyed inputs meanwhile:
every input must be answered exactly once, and the answers must name at least two versions
(the switches happened while the inputs flowed). Then the inference is pinned back to version 1
(a roll back) and the next answers name it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.datasources import OnlineRawSink
from shared.events.versions import MODEL_VERSION_HEADER
from tests.e2e.client import ok, until
from tests.e2e.test_training import DIGIT_IMAGES, DIGIT_LABELS, KERAS_DIGITS, accuracy, explained, stack

pytestmark = pytest.mark.e2e

__all__ = ["stack"]  # this module's own stack (an imported module-scoped fixture is one per module)

WINDOW = 300
PARTS = (slice(0, 600), slice(600, 1200), slice(1200, len(DIGIT_LABELS)))
PAUSE_S = 5.0
INPUT, OUTPUT = "e2e-online-in", "e2e-online-out"


@pytest.fixture(scope="module")
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack['token']}"}
    with httpx.Client(base_url=stack["api_url"] + "/api/v1", headers=headers, timeout=120) as client:
        yield client


class Feeder:
    """Keyed digits at a steady rate on the inference's input topic, from a thread of its own."""

    def __init__(self, bootstrap: str, prefix: str = "in", rate: float = 40.0) -> None:
        self.bootstrap, self.prefix, self.rate = bootstrap, prefix, rate
        self.sent: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            while not self.stopping.is_set():
                key = f"{self.prefix}-{len(self.sent)}"
                image = DIGIT_IMAGES[len(self.sent) % len(DIGIT_IMAGES)]
                await producer.send_and_wait(INPUT, image.tobytes(), key=key.encode())
                self.sent.append(key)
                await asyncio.sleep(1 / self.rate)
        finally:
            await producer.stop()

    def stop(self) -> list[str]:
        self.stopping.set()
        self.thread.join(30)
        return self.sent


async def answers(bootstrap: str, expected: int, timeout_s: float = 120) -> list[tuple[str, str]]:
    """(key, version header) of every record on the output topic, once ``expected`` are there (and
    a little longer, so that an input answered twice would show)."""
    consumer = AIOKafkaConsumer(OUTPUT, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout_s
    settle: float | None = None
    try:
        while time.monotonic() < (settle or deadline):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    found.append((r.key.decode(), dict(r.headers).get(MODEL_VERSION_HEADER, b"none").decode()))
            if settle is None and len(found) >= expected:
                settle = time.monotonic() + 3
    finally:
        await consumer.stop()
    return found


def test_an_online_stream_trains_versions_that_an_inference_follows(stack: dict[str, Any], http: httpx.Client) -> None:
    bootstrap = str(stack["bootstrap_servers"])
    with explained(stack):
        model = ok(http, "POST", "/models", {"name": "online", "framework": "tensorflow", "code": KERAS_DIGITS})
        configuration = ok(http, "POST", "/configurations", {"name": "online", "model_ids": [model["id"]]})
        deployment = ok(
            http, "POST", "/deployments",
            {"configuration_id": configuration["id"], "fit": {"epochs": 5},
             "incremental": {"window_samples": WINDOW, "stream_timeout_s": None}},
        )  # fmt: skip
        deployment_id, result_id = deployment["id"], deployment["results"][0]["id"]
        sink = OnlineRawSink(
            bootstrap, "e2e-online-digits", deployment_id, data_type="uint8", label_type="uint8",
            data_reshape="8 8", label_reshape="1", validation_rate=0.1, description="digits, online",
        )  # fmt: skip
        feeder = Feeder(bootstrap)
        inference: dict[str, Any] = {}
        try:
            for number, part in enumerate(PARTS):
                for image, label in zip(DIGIT_IMAGES[part], DIGIT_LABELS[part], strict=True):
                    sink.send(image, label)
                sink.flush()
                if number == 0:  # the first version serves while the next parts train the others
                    until(http, f"/results/{result_id}/versions", lambda v: len(v) >= 1, 240)
                    inference = ok(
                        http, "POST", "/inferences",
                        {"result_id": result_id, "input_topic": INPUT, "output_topic": OUTPUT,
                         "model_version": "latest"},
                    )  # fmt: skip
                    until(http, f"/inferences/{inference['id']}", lambda i: i["status"] == "running", 180)
                    feeder.thread.start()
                time.sleep(PAUSE_S)
        finally:
            sink.online_close()
        # Every full window trained (the stream is open: the last partial one waits for more).
        full = len(DIGIT_LABELS) // WINDOW
        windows = until(http, f"/results/{result_id}/windows", lambda w: len(w) >= full, 300)
        versions = until(http, f"/results/{result_id}/versions", lambda v: len(v) >= full, 60)
        until(http, f"/inferences/{inference['id']}", lambda i: i["serving_version"] == len(versions), 60)
        time.sleep(2)  # inputs still flow after the last switch
        sent = feeder.stop()
        seen = asyncio.run(answers(bootstrap, len(sent)))

        assert [w["window"] for w in windows] == list(range(1, len(windows) + 1)), windows
        first, last = accuracy(windows[0]["prequential"]), accuracy(windows[-1]["prequential"])
        print(f"{len(windows)} windows, {len(versions)} versions, prequential accuracy {first:.3f} → {last:.3f}")
        assert last > first, (windows[0], windows[-1])
        counts = Counter(key for key, _ in seen)
        assert set(counts) == set(sent), f"{len(set(sent) - set(counts))} of {len(sent)} inputs unanswered"
        assert max(counts.values()) == 1, f"answered twice: {[k for k, n in counts.items() if n > 1][:5]}"
        by_version = Counter(version for _, version in seen)
        print(f"{len(seen)} answers by version: {dict(sorted(by_version.items()))}")
        assert "none" not in by_version and len(by_version) >= 2, by_version

        # A roll back to version 1: the answers to new inputs name it.
        ok(http, "POST", f"/inferences/{inference['id']}/model-version", {"model_version": 1})
        pinned = until(http, f"/inferences/{inference['id']}", lambda i: i["serving_version"] == 1, 60)
        assert pinned["model_version"] == 1, pinned
        again = Feeder(bootstrap, prefix="after-roll-back")
        again.thread.start()
        time.sleep(3)
        later = set(again.stop())
        tail = [(k, v) for k, v in asyncio.run(answers(bootstrap, len(sent) + len(later))) if k in later]
        assert {k for k, _ in tail} == later and {v for _, v in tail} == {"1"}, Counter(v for _, v in tail)
        ok(http, "POST", f"/results/{result_id}/stop")
        ok(http, "POST", f"/inferences/{inference['id']}/stop")
