"""Live feeds for browsers: one Kafka consumer per topic, any number of clients.

A feed starts with its first client and reads its topic from the end (no consumer group:
it must not steal partitions from anyone); every client gets the same items through its own
bounded buffer, and a slow client loses its oldest items rather than slowing the others (what
piled up since its last read comes as one batch). The feed stops a while after its last client
left. An inference's live predictions are one such feed (its output topic), the update hub
(services/api/hub.py) another (the events topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer

from shared.kafka import make_consumer, wait_for_assignment
from shared.settings import Settings

log = logging.getLogger("kafkaml.api.live")

T = TypeVar("T")
# A record's value → the items it carries (none when it is not one the feed understands).
Decode = Callable[[bytes | None], Sequence[Any]]

# Per client: enough for the page's rolling window, bounded whatever the output topic's rate.
CLIENT_PREDICTIONS = 1000
IDLE_STOP_S = 30.0
# Comments in a stream keep proxies and browsers from closing an idle connection.
KEEPALIVE_S = 15.0
# How long a new feed waits for its partitions before its clients are told it is open anyway
# (a topic created later is picked up when the consumer next refreshes its metadata).
ASSIGNMENT_WAIT_S = 10.0


def everything(_: object) -> bool:
    return True


class Client(Generic[T]):
    """One client's items not read yet, the oldest dropped beyond ``limit``; ``wants`` filters."""

    def __init__(self, limit: int = CLIENT_PREDICTIONS, wants: Callable[[T], bool] = everything) -> None:
        self.pending: deque[T] = deque(maxlen=limit)
        self.wants = wants
        self.at = 0.0
        self.ready = asyncio.Event()

    def push(self, items: Sequence[T], at: float) -> None:
        kept = [item for item in items if self.wants(item)]
        if not kept:
            return
        self.pending.extend(kept)
        self.at = at
        self.ready.set()

    async def take(self) -> tuple[list[T], float]:
        """Everything that came since the last take (waits for something), and when it came."""
        await self.ready.wait()
        self.ready.clear()
        items = list(self.pending)
        self.pending.clear()
        return items, self.at

    async def next(self) -> dict[str, Any]:
        """The next batch of predictions, as the stream sends it."""
        predictions, at = await self.take()
        return {"predictions": predictions, "at": at}


class Feed:
    def __init__(self, settings: Settings, topic: str, decode: Decode) -> None:
        self.settings = settings
        self.topic = topic
        self.decode = decode
        self.clients: set[Client[Any]] = set()
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle_since: float | None = None

    async def start(self) -> None:
        self.consumer = make_consumer(self.settings, self.topic, group_id=None, auto_offset_reset="latest")
        try:
            await self.consumer.start()
            # Resolve "latest" now: what is produced after a client joined reaches it.
            await wait_for_assignment(self.consumer, ASSIGNMENT_WAIT_S)
            for partition in self.consumer.assignment():
                await self.consumer.position(partition)
        except TimeoutError:
            log.warning("live feed of %s: no partitions yet (does the topic exist?)", self.topic)
        except BaseException:
            await self.consumer.stop()  # the broker is away: the client's retry starts a new feed
            raise
        self.task = asyncio.create_task(self._read(), name=f"live-{self.topic}")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.consumer:
            await self.consumer.stop()

    def add(self, client: Client[Any]) -> None:
        self.clients.add(client)
        self.idle_since = None

    def remove(self, client: Client[Any]) -> None:
        self.clients.discard(client)
        if not self.clients:
            self.idle_since = time.monotonic()

    async def _read(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            items: list[Any] = []
            for records in batches.values():
                for record in records:
                    items.extend(self.decode(record.value))
            if items:
                self.broadcast(items, time.time())

    def broadcast(self, items: Sequence[Any], at: float) -> None:
        for client in list(self.clients):
            client.push(items, at)


def decode_prediction(raw: bytes | None) -> list[list[float]]:
    try:
        values = json.loads(raw or b"")["values"]
    except (ValueError, KeyError, TypeError):
        return []
    if not isinstance(values, list):
        return []
    # A model with a multi-dimensional output writes it nested; the live view shows one row of numbers.
    row: list[float] = []
    pending: list[Any] = [values]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        else:
            row.append(item)
    return [row]


class LiveFeeds:
    """The feeds of one API process, by topic and decoder: one consumer each, whatever the clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.feeds: dict[tuple[str, Decode], Feed] = {}
        self.lock = asyncio.Lock()
        self.reaper: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def open(
        self,
        topic: str,
        decode: Decode = decode_prediction,
        *,
        limit: int = CLIENT_PREDICTIONS,
        wants: Callable[[Any], bool] = everything,
    ) -> AsyncIterator[Client[Any]]:
        """A client of the feed of ``topic``: what arrives from now on, until the block ends."""
        client: Client[Any] = Client(limit, wants)
        async with self.lock:
            feed = self.feeds.get((topic, decode))
            if feed is None:
                feed = Feed(self.settings, topic, decode)
                await feed.start()
                self.feeds[(topic, decode)] = feed
                log.info("live feed of %s started", topic)
            feed.add(client)
            if self.reaper is None:
                self.reaper = asyncio.create_task(self._reap(), name="live-reaper")
        try:
            yield client
        finally:
            feed.remove(client)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(5)
            async with self.lock:
                for key, feed in list(self.feeds.items()):
                    if feed.idle_since is not None and time.monotonic() - feed.idle_since > IDLE_STOP_S:
                        del self.feeds[key]
                        await feed.stop()
                        log.info("live feed of %s stopped (no client)", feed.topic)

    async def close(self) -> None:
        if self.reaper:
            self.reaper.cancel()
        for feed in self.feeds.values():
            await feed.stop()
        self.feeds.clear()
