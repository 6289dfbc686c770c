"""An unbounded stream read window by window, for incremental training.

The stream's partitions are assigned by hand (no group membership: nothing has to heartbeat
while a window trains in a thread); the consumer group ``kafkaml-incremental-<job id>`` only
holds the committed offsets, which the trainer commits once a window is fully reported. A
window opens with its first record and closes when it holds ``window_samples`` records or
``window_s`` seconds have passed since it opened, whichever comes first. Its spans start
where the previous window ended (the position before it), so consecutive windows chain
exactly, gaps in the offsets (compaction, transaction markers) included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import TopicPartition

from services.trainer.data.errors import DataError
from shared.events.versions import OffsetSpan
from shared.kafka import make_consumer
from shared.settings import Settings

# How long one poll waits for records: bounds how late a timed window closes.
_POLL_MS: Final = 200
MAX_RECORDS: Final = 10_000


def group_id(job_id: str) -> str:
    return f"kafkaml-incremental-{job_id}"


@dataclass(frozen=True)
class WindowRule:
    """When a window closes (pure: times are passed in)."""

    samples: int | None
    seconds: float | None

    def full(self, held: int, opened_at: float | None, now: float) -> bool:
        if held == 0 or opened_at is None:
            return False
        if self.samples is not None and held >= self.samples:
            return True
        return self.seconds is not None and now - opened_at >= self.seconds

    def room(self, held: int) -> int:
        """How many more records this window takes."""
        return MAX_RECORDS if self.samples is None else max(0, min(MAX_RECORDS, self.samples - held))


@dataclass
class Window:
    """The records of one window, in the order read, and where they were."""

    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    starts: dict[int, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    def add(self, partition: int, position: int, records: list[Any]) -> None:
        if not records:
            return
        self.starts.setdefault(partition, position)
        self.ends[partition] = records[-1].offset + 1
        self.keys.extend(r.key for r in records)
        self.values.extend(r.value for r in records)

    def spans(self) -> list[OffsetSpan]:
        return [OffsetSpan(partition=p, start=self.starts[p], end=self.ends[p]) for p in sorted(self.ends)]


def chain(previous: Mapping[int, int], window: Window) -> dict[int, int]:
    """The next positions after ``window``: its ends, the previous positions elsewhere."""
    return {**previous, **window.ends}


def stream_topic(topic: str) -> tuple[str, dict[int, int]]:
    """The control message's topic field as (topic, start offset per partition).

    A bare name (upstream's online form) starts at the beginning of every partition; ranges
    ``topic:partition:start:end`` (an incremental deployment given a bounded announcement)
    start at each range's start and read past its end.
    """
    parts = [p.strip() for p in topic.split(",") if p.strip()]
    if len(parts) == 1 and ":" not in parts[0]:
        return parts[0], {}
    starts: dict[int, int] = {}
    names = set()
    for part in parts:
        pieces = part.split(":")
        if len(pieces) != 4:
            raise DataError(
                f"topic {part!r} of the control message is neither a topic name nor topic:partition:start:end"
            )
        name, partition, start, _ = pieces
        try:
            starts[int(partition)] = int(start)
        except ValueError:
            raise DataError(f"topic range {part!r} has a non-integer partition or offset") from None
        names.add(name)
    if len(names) != 1:
        raise DataError(f"an incremental training reads one topic; the control message names {sorted(names)}")
    return names.pop(), starts


class StreamReader:
    """Reads windows from every partition of one topic, from given positions on."""

    def __init__(self, settings: Settings, topic: str, job_id: str) -> None:
        self.settings = settings
        self.topic = topic
        self.consumer = make_consumer(settings, group_id=group_id(job_id), max_partition_fetch_bytes=4 * 2**20)
        self.partitions: list[TopicPartition] = []
        self.positions: dict[int, int] = {}
        # Set when the last window was cut short because the stream went quiet (its end).
        self.idle = False

    async def start(self, starts: Mapping[int, int], *, timeout_s: float) -> None:
        """Assigns the topic's partitions (waiting up to ``timeout_s`` for the topic) and seeks each to
        its start offset, the beginning where none is given."""
        await self.consumer.start()
        deadline = time.monotonic() + timeout_s
        while True:
            await self.consumer.topics()  # refreshes the metadata
            found = self.consumer.partitions_for_topic(self.topic)
            if found:
                break
            if time.monotonic() >= deadline:
                raise DataError(f"the topic {self.topic!r} of the control message does not exist on the brokers")
            await asyncio.sleep(0.5)
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(found)]
        self.consumer.assign(self.partitions)
        beginnings = await self.consumer.beginning_offsets(self.partitions)
        for tp in self.partitions:
            at = max(starts.get(tp.partition, 0), beginnings[tp])
            self.consumer.seek(tp, at)
            self.positions[tp.partition] = at

    async def stop(self) -> None:
        await self.consumer.stop()

    async def committed(self) -> dict[int, int]:
        found = {}
        for tp in self.partitions:
            offset = await self.consumer.committed(tp)
            if offset is not None and offset >= 0:
                found[tp.partition] = offset
        return found

    async def commit(self, positions: Mapping[int, int]) -> None:
        await self.consumer.commit({TopicPartition(self.topic, p): o for p, o in positions.items()})

    async def read(self, rule: WindowRule, idle_timeout_s: float | None) -> Window:
        """The next window; an empty one when no record came for ``idle_timeout_s`` (None: waits forever).

        A partly filled window is returned when the stream goes quiet for that long, so that the
        last records before the end are trained on too."""
        window = Window()
        self.idle = False
        opened_at: float | None = None
        last_record = time.monotonic()
        while True:
            now = time.monotonic()
            if rule.full(len(window), opened_at, now):
                return window
            if idle_timeout_s is not None and now - last_record >= idle_timeout_s:
                self.idle = True
                return window
            wait_ms = _POLL_MS
            if opened_at is not None and rule.seconds is not None:
                wait_ms = max(1, min(wait_ms, int((opened_at + rule.seconds - now) * 1000) + 1))
            batches = await self._draw(rule.room(len(window)), wait_ms)
            for tp, records in sorted(batches.items(), key=lambda item: item[0].partition):
                if not records:
                    continue
                if opened_at is None:
                    opened_at = time.monotonic()
                window.add(tp.partition, self.positions[tp.partition], records)
                self.positions[tp.partition] = records[-1].offset + 1
                last_record = time.monotonic()

    async def _draw(self, room: int, wait_ms: int) -> dict[TopicPartition, list[Any]]:
        """Up to ``room`` records, shared among the partitions that have records buffered.

        aiokafka hands out one partition's buffer before the next, so a backlog (a topic keyed by
        label, read after a pause) would fill a window from one partition, with that partition's
        labels only. Taken a share per partition, a window mixes them as the stream did."""
        drawn = await self._shares(room, {})
        if drawn:
            return drawn
        # Nothing buffered: wait for the stream, taking one record, then the shares of what came.
        first = await self.consumer.getmany(timeout_ms=wait_ms, max_records=1)
        return await self._shares(room - 1, first) if first else {}

    async def _shares(self, room: int, drawn: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        share = -(-room // len(self.partitions))
        for tp in self.partitions:
            take = min(share, room)
            if take <= 0:
                break
            records = (await self.consumer.getmany(tp, timeout_ms=0, max_records=take)).get(tp)
            if records:
                drawn[tp] = [*drawn.get(tp, ()), *records]
                room -= len(records)
        return drawn
