"""Live predictions for browsers: one Kafka consumer per inference, any number of clients.

A feed starts with its first client and reads the inference's output topic
from its end (no consumer group: it must not steal partitions from anyone);
every client gets the same batches through its own bounded queue, and a slow
client loses its oldest batches rather than slowing the others. The feed
stops a while after its last client left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.kafka import make_consumer
from shared.settings import Settings

log = logging.getLogger("kafkaml.api.live")

QUEUE_BATCHES = 100
IDLE_STOP_S = 30.0


class Feed:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle_since: float | None = None

    async def start(self) -> None:
        self.consumer = make_consumer(self.settings, self.topic, group_id=None, auto_offset_reset="latest")
        await self.consumer.start()
        self.task = asyncio.create_task(self._read(), name=f"live-{self.topic}")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.consumer:
            await self.consumer.stop()

    def add(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_BATCHES)
        self.clients.add(queue)
        self.idle_since = None
        return queue

    def remove(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.clients.discard(queue)
        if not self.clients:
            self.idle_since = time.monotonic()

    async def _read(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            predictions = []
            for records in batches.values():
                for record in records:
                    values = decode_prediction(record.value)
                    if values is not None:
                        predictions.append(values)
            if predictions:
                self.broadcast({"predictions": predictions, "at": time.time()})

    def broadcast(self, batch: dict[str, Any]) -> None:
        for queue in self.clients:
            if queue.full():  # a slow client loses its oldest batch, not everyone's time
                queue.get_nowait()
            queue.put_nowait(batch)


def decode_prediction(raw: bytes | None) -> list[float] | None:
    try:
        values = json.loads(raw or b"")["values"]
    except (ValueError, KeyError, TypeError):
        return None
    return values if isinstance(values, list) else None


class LiveFeeds:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.feeds: dict[str, Feed] = {}
        self.lock = asyncio.Lock()
        self.reaper: asyncio.Task[None] | None = None

    async def subscribe(self, topic: str) -> AsyncIterator[dict[str, Any]]:
        """Batches of predictions on ``topic`` from now on, until the caller stops iterating."""
        async with self.lock:
            feed = self.feeds.get(topic)
            if feed is None:
                feed = self.feeds[topic] = Feed(self.settings, topic)
                await feed.start()
                log.info("live feed of %s started", topic)
            queue = feed.add()
            if self.reaper is None:
                self.reaper = asyncio.create_task(self._reap(), name="live-reaper")
        try:
            while True:
                yield await queue.get()
        finally:
            feed.remove(queue)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(5)
            async with self.lock:
                for topic, feed in list(self.feeds.items()):
                    if feed.idle_since is not None and time.monotonic() - feed.idle_since > IDLE_STOP_S:
                        del self.feeds[topic]
                        await feed.stop()
                        log.info("live feed of %s stopped (no client)", topic)

    async def close(self) -> None:
        if self.reaper:
            self.reaper.cancel()
        for feed in self.feeds.values():
            await feed.stop()
        self.feeds.clear()
