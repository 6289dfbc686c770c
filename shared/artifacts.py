"""Trained models travel through Kafka in chunks, each carrying the checksum of the whole.

Every chunk of a result is keyed by its result id, so all of them are in one partition of the
artifacts topic, in the order they were published. That partition grows for as long as the
result lives (an incremental trainer adds a checkpoint or a version every window, and every
deploy or switch sends a version again), so readers look for what they need from the
partition's end backwards (:class:`ResultPartition`), not from its start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiokafka import TopicPartition

from shared.events.training import ArtifactChunk, Chunk
from shared.kafka import make_consumer
from shared.settings import Settings
from shared.topics import topics_for

CHUNK_BYTES: Final = 512 * 1024
# Reading back starts with the newest records and doubles the span at each step back.
FIRST_SPAN: Final = 32
MAX_SPAN: Final = 4096
_POLL_MS: Final = 500
# A span ends at its upper offset, or after this long without a record (records removed by retention).
_SPAN_IDLE_S: Final = 3.0

log = logging.getLogger("kafkaml.artifacts")

Take = Callable[[Any], bool]
"""Called with each record read; True once the reader has what it needs."""


def chunk_artifact(result_id: int, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[ArtifactChunk]:
    """The artifact as chunks, each carrying the checksum of the whole (an empty file is one empty chunk)."""
    digest = hashlib.sha256(data).hexdigest()
    pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    return [
        ArtifactChunk(
            payload=Chunk(
                result_id=result_id,
                index=index,
                count=len(pieces),
                sha256=digest,
                data=base64.b64encode(piece).decode("ascii"),
            )
        )
        for index, piece in enumerate(pieces)
    ]


def chunk_bytes(chunk: Chunk) -> bytes:
    """The bytes a chunk carries; ValueError when its data is not base64."""
    try:
        return base64.b64decode(chunk.data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"chunk {chunk.index} of result {chunk.result_id}: data is not base64 ({exc})") from exc


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def result_partition(result_id: int, partitions: list[int]) -> int:
    """The partition a result's chunks go to: the producer's default partitioner on the key."""
    from aiokafka.partitioner import DefaultPartitioner

    partition: int = DefaultPartitioner()(str(result_id).encode(), sorted(partitions), sorted(partitions))
    return partition


class ResultPartition:
    """A group-less reader of one result's partition of the artifacts topic.

    ``newest_first`` reads spans of growing size from the end back to the start; ``follow``
    then reads what arrives after the end. ``records_read`` says how much was read (the log
    and the tests use it). The embedded broker can answer an end offset inside the last record
    batch; reading on to that offset still returns the whole batch, so nothing is missed.
    """

    def __init__(self, settings: Settings, result_id: int, **consumer_options: Any) -> None:
        self.topic = topics_for(settings).artifacts
        self.result_id = result_id
        self.consumer = make_consumer(settings, group_id=None, **consumer_options)
        self.tp: TopicPartition | None = None
        self.frontier = 0
        self.records_read = 0

    async def __aenter__(self) -> ResultPartition:
        await self.consumer.start()
        try:
            await self._assign()
        except BaseException:
            await self.consumer.stop()
            raise
        return self

    async def _assign(self) -> bool:
        """Assigns the result's partition once the topic's metadata is known; False until then."""
        if self.tp is None:
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
            if not partitions:
                await self.consumer.topics()
                partitions = self.consumer.partitions_for_topic(self.topic) or set()
            if partitions:
                self.tp = TopicPartition(self.topic, result_partition(self.result_id, list(partitions)))
                self.consumer.assign([self.tp])
                self.consumer.seek(self.tp, self.frontier)
        return self.tp is not None

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def newest_first(
        self, take: Take, stop: asyncio.Event | None = None, enough: Callable[[], bool] | None = None
    ) -> bool:
        """Hands ``take`` the records from the end back to the start (newest span first, each span
        in offset order) until it answers True, or ``enough`` does after a span; False when
        neither did (or ``stop`` was set)."""
        if self.tp is None:
            return False
        tp = self.tp
        start = (await self.consumer.beginning_offsets([tp]))[tp]
        high = (await self.consumer.end_offsets([tp]))[tp]
        self.frontier, span, first = high, FIRST_SPAN, True
        while high > start:
            low = max(start, high - span)
            self.consumer.seek(tp, low)
            last = time.monotonic()
            while await self.consumer.position(tp) < high and time.monotonic() - last < _SPAN_IDLE_S:
                if stop is not None and stop.is_set():
                    return False
                for record in (await self.consumer.getmany(tp, timeout_ms=_POLL_MS)).get(tp, []):
                    last = time.monotonic()
                    # The first span reads to the real end; later ones stop where the newer began.
                    if record.offset >= high and not first:
                        continue
                    self.records_read += 1
                    if take(record):
                        return True
            if first:
                self.frontier, first = await self.consumer.position(tp), False
            if enough is not None and enough():
                return True
            high, span = low, min(span * 2, MAX_SPAN)
        return False

    async def follow(self, take: Take, deadline: float, stop: asyncio.Event | None = None) -> bool:
        """Hands ``take`` what arrives after the end ``newest_first`` found, until it answers True
        (True), ``deadline`` (``time.monotonic``) passes or ``stop`` is set (False)."""
        if self.tp is not None:
            self.consumer.seek(self.tp, self.frontier)
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                return False
            if not await self._assign():  # the topic is not there yet
                await asyncio.sleep(_POLL_MS / 1000)
                continue
            for record in (await self.consumer.getmany(timeout_ms=_POLL_MS)).get(self.tp, []):
                self.records_read += 1
                if take(record):
                    return True
        return False
