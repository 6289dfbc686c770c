"""End to end: `kafkaml down` then `kafkaml up` on the same home. The embedded broker keeps its
topics in memory, so the restart loses them, while PostgreSQL keeps the catalog. What a user sees:
a data source sent before says its data is gone, a training that needed it fails with that reason,
and a running inference comes back and answers again."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sklearn.datasets import load_digits

from tests.conftest import free_port
from tests.e2e.client import ok, send_digits, until
from tests.e2e.test_stack import KERAS, kafkaml

pytestmark = pytest.mark.e2e

DIGITS = load_digits()
IMAGES = DIGITS.images.astype(np.uint8)
LABELS = DIGITS.target.astype(np.uint8)


class Stack:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="kml-e2e-restart-", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKAML_")}
        self.env.update(KAFKAML_HOME=str(self.home), KAFKAML_API_PORT=str(free_port()))
        self.info: dict[str, Any] = {}
        self.http: httpx.Client | None = None

    def up(self) -> None:
        up = kafkaml(self.env, "up", "--detach")
        assert up.returncode == 0, f"kafkaml up failed:\n{up.stdout}\n{up.stderr}"
        self.info = json.loads((self.home / "stack.json").read_text())
        headers = {"Authorization": f"Bearer {self.info['token']}"}
        self.http = httpx.Client(base_url=self.info["api_url"] + "/api/v1", headers=headers, timeout=60)

    def down(self) -> None:
        if self.http is not None:
            self.http.close()
        down = kafkaml(self.env, "down", timeout=120)
        assert down.returncode == 0, down.stderr

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self.http is not None
        return ok(self.http, method, path, body)

    def until(self, path: str, ready: Callable[[Any], bool], timeout_s: float = 120) -> Any:
        assert self.http is not None
        return until(self.http, path, ready, timeout_s)

    def send_digits(self, deployment_id: int, topic: str) -> None:
        send_digits(self.info["bootstrap_servers"], deployment_id, topic, IMAGES, LABELS)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack()
    stack.up()
    try:
        yield stack
    finally:
        kafkaml(stack.env, "down", timeout=120)


async def predictions(bootstrap: str, source: str, sink: str, count: int, timeout_s: float = 90) -> int:
    """Sends ``count`` digits to ``source`` and counts the predictions that come out of ``sink``."""
    consumer = AIOKafkaConsumer(sink, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for image in IMAGES[:count]:
            await producer.send(source, image.tobytes())
        await producer.flush()
        seen = 0
        deadline = time.monotonic() + timeout_s
        while seen < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += sum(1 for r in records if "values" in json.loads(r.value))
        return seen
    finally:
        await producer.stop()
        await consumer.stop()


def test_down_and_up_says_what_was_lost_and_resumes_what_can(stack: Stack) -> None:
    model = stack.ok("POST", "/models", {"name": "digits", "framework": "tensorflow", "code": KERAS})
    configuration = stack.ok("POST", "/configurations", {"name": "c", "model_ids": [model["id"]]})

    # A trained, served model ...
    served = stack.ok("POST", "/deployments", {"configuration_id": configuration["id"], "fit": {"epochs": 3}})
    stack.send_digits(served["id"], "restart-digits-a")
    result = served["results"][0]["id"]
    stack.until(f"/results/{result}", lambda r: r["status"] == "finished")
    inference = stack.ok(
        "POST", "/inferences", {"result_id": result, "input_topic": "restart-in", "output_topic": "restart-out"}
    )
    stack.until(f"/inferences/{inference['id']}", lambda i: i["status"] == "running")
    # ... and a training still busy with its data when the stack goes down.
    long = stack.ok("POST", "/deployments", {"configuration_id": configuration["id"], "fit": {"epochs": 100_000}})
    stack.send_digits(long["id"], "restart-digits-b")
    busy = long["results"][0]["id"]
    stack.until(f"/results/{busy}", lambda r: r["status"] == "training")

    stack.down()
    stack.up()

    sources = stack.until("/datasources", lambda found: all(d["lost"] for d in found), timeout_s=60)
    assert len(sources) == 2 and all("send the data again" in d["lost"] for d in sources), sources
    failed = stack.until(f"/results/{busy}", lambda r: r["status"] == "failed", timeout_s=60)
    assert "restart-digits-b" in failed["error"] and "gone" in failed["error"], failed
    assert stack.ok("GET", f"/results/{result}")["status"] == "finished", "a finished result stays finished"
    stack.until(f"/inferences/{inference['id']}", lambda i: i["status"] == "running", timeout_s=90)
    answered = asyncio.run(predictions(stack.info["bootstrap_servers"], "restart-in", "restart-out", 50))
    assert answered == 50, "the inference resumed and answers every input"
