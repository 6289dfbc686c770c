"""The liveness file against the real broker: the one consumer loop touches it on an empty
poll, and an idle faust service and an idle validator (real processes) keep touching it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.alive import AliveFile
from shared.kafka import Producer, Received, consume, create_topics, make_consumer
from shared.settings import Settings
from shared.topics import TopicSpec
from tests.conftest import service_env

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]


def mtime_ns(path: Path) -> int | None:
    """When the file was last touched; None before it exists."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


async def wait_for_file(path: Path, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while mtime_ns(path) is None:
        assert process is None or process.poll() is None, "the service exited"
        assert time.monotonic() < deadline, f"{path} was never touched"
        await asyncio.sleep(0.1)


async def test_consume_touches_the_alive_file_on_an_empty_poll(settings: Settings, tmp_path: Path) -> None:
    topic = f"{settings.topic_prefix}.liveness-{uuid.uuid4().hex[:6]}"
    await create_topics(settings, [TopicSpec(topic, 1)])
    path = tmp_path / "alive"
    consumer = make_consumer(settings, topic, group_id=None)
    stop = asyncio.Event()

    async def handle(received: Received) -> None:
        raise AssertionError(f"the topic is empty, yet {received.offset} arrived")

    await consumer.start()
    try:
        async with Producer(settings) as producer:
            loop = asyncio.create_task(
                consume(
                    consumer,
                    handle,
                    producer=producer,
                    dead_letter_topic=f"{settings.topic_prefix}.dead-letters",
                    name="liveness-test",
                    stop=stop,
                    alive=AliveFile(str(path)),
                )
            )
            try:
                await wait_for_file(path, 10)
            finally:
                stop.set()
                await asyncio.wait_for(loop, 10)
    finally:
        await consumer.stop()


async def test_an_idle_faust_service_keeps_touching_its_alive_file(
    settings: Settings, run_service: StartService, tmp_path: Path
) -> None:
    path = tmp_path / "alive"
    env = {**service_env(settings, database=True), "KAFKAML_ALIVE_FILE": str(path)}
    process = run_service("services.metrics", env, name="metrics")
    await wait_for_file(path, 90, process)
    first = mtime_ns(path)
    deadline = time.monotonic() + 15
    while mtime_ns(path) == first:  # nothing arrives: only the timer touches it
        assert process.poll() is None, "the service exited"
        assert time.monotonic() < deadline, "the alive file went stale while the service was idle"
        await asyncio.sleep(0.2)
    assert process.poll() is None


async def test_an_idle_validator_keeps_touching_its_alive_file(
    settings: Settings, run_service: StartService, tmp_path: Path
) -> None:
    path = tmp_path / "alive"
    env = {**service_env(settings, database=False), "KAFKAML_ALIVE_FILE": str(path)}
    process = run_service("services.trainer.validator", env, name="validator")
    await wait_for_file(path, 120, process)
    first = mtime_ns(path)
    deadline = time.monotonic() + 15
    while mtime_ns(path) == first:  # empty polls only
        assert process.poll() is None, "the validator exited"
        assert time.monotonic() < deadline, "the alive file went stale while the validator was idle"
        await asyncio.sleep(0.2)
