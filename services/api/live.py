"""Live predictions for browsers: one Kafka consumer per inference, any number of clients.

A feed starts with its first client and reads the inference's output topic
from its end (no consumer group: it must not steal partitions from anyone);
every client gets the same predictions through its own bounded buffer, and a
slow client loses its oldest predictions rather than slowing the others (what
piled up since its last read comes as one batch). The feed stops a while
after its last client left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.kafka import make_consumer
from shared.settings import Settings

log = logging.getLogger("kafkaml.api.live")

# Per client: enough for the page's rolling window, bounded whatever the output topic's rate.
CLIENT_PREDICTIONS = 1000
IDLE_STOP_S = 30.0


class Client:
    """One client's predictions not read yet, the oldest dropped beyond ``CLIENT_PREDICTIONS``."""

    def __init__(self) -> None:
        self.pending: deque[list[float]] = deque(maxlen=CLIENT_PREDICTIONS)
        self.at = 0.0
        self.ready = asyncio.Event()

    def push(self, predictions: list[list[float]], at: float) -> None:
        self.pending.extend(predictions)
        self.at = at
        self.ready.set()

    async def next(self) -> dict[str, Any]:
        await self.ready.wait()
        self.ready.clear()
        batch = {"predictions": list(self.pending), "at": self.at}
        self.pending.clear()
        return batch


class Feed:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.clients: set[Client] = set()
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

    def add(self) -> Client:
        client = Client()
        self.clients.add(client)
        self.idle_since = None
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
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
                self.broadcast(predictions, time.time())

    def broadcast(self, predictions: list[list[float]], at: float) -> None:
        for client in self.clients:
            client.push(predictions, at)


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
            client = feed.add()
            if self.reaper is None:
                self.reaper = asyncio.create_task(self._reap(), name="live-reaper")
        try:
            while True:
                yield await client.next()
        finally:
            feed.remove(client)

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
