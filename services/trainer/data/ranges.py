"""Reading exactly the announced ranges: each partition from ``start`` to ``end`` (exclusive).

The embedded broker's end offsets are wrong when records arrive in batches,
so nothing here is computed from end offsets: the control message's ranges
say which records to read, and a partition that stops short of ``end`` is
waited for, for a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.trainer.data.errors import DataError
from shared.control import TopicRange
from shared.kafka import make_consumer
from shared.kafka_security import security_options
from shared.settings import Settings

# Large fetches: reading a data set is a bulk transfer.
MAX_PARTITION_FETCH_BYTES: Final = 4 * 1024 * 1024
FETCH_MAX_BYTES: Final = 50 * 1024 * 1024
MAX_RECORDS: Final = 10_000


async def check_topics(settings: Settings, ranges: Sequence[TopicRange]) -> None:
    """Raises DataError when a range names a topic or partition the brokers do not have.

    Only listing, never describing, a missing topic: a metadata request for a
    missing topic may create it (the embedded broker does).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.brokers, **security_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = sorted({r.topic for r in ranges})
        missing = [name for name in names if name not in existing]
        if missing:
            raise DataError(
                f"the control message names topic {missing[0]!r}, which does not exist on the brokers: "
                "send the data to an existing topic, then a control message with its ranges"
            )
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = {d["topic"]: {p["partition"] for p in d.get("partitions", [])} for d in described}
    for r in ranges:
        if r.partition not in partitions.get(r.topic, set()):
            raise DataError(
                f"the control message names partition {r.partition} of topic {r.topic!r}, "
                f"which has partitions {sorted(partitions.get(r.topic, set()))}"
            )


@dataclass(frozen=True)
class RecordBatch:
    """Records of one range, in offset order, all within ``[start, end)``."""

    range: TopicRange
    base: int  # the position of the range's first record among all announced records
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]

    def position(self, index: int) -> int:
        """The record's position among all announced records (ranges in the message's order)."""
        return self.base + self.offsets[index] - self.range.start


def _bulk_consumer(settings: Settings) -> AIOKafkaConsumer:
    return make_consumer(
        settings,
        group_id=None,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=FETCH_MAX_BYTES,
    )


async def iter_ranges(
    settings: Settings, ranges: Sequence[TopicRange], *, missing_timeout_s: float = 30.0
) -> AsyncGenerator[RecordBatch, None]:
    """Yields the records of the announced ranges, stopping at each range's ``end``.

    Partitions are assigned manually and read in parallel. A partition that
    delivers nothing new for ``missing_timeout_s`` before reaching its end
    fails the read, naming the range.
    """
    bases: dict[TopicPartition, tuple[TopicRange, int]] = {}
    base = 0
    for r in ranges:
        tp = TopicPartition(r.topic, r.partition)
        if tp in bases:
            raise DataError(f"the control message names {r.topic}:{r.partition} twice")
        if r.count > 0:
            bases[tp] = (r, base)
        base += r.count
    if not bases:
        return
    consumer = _bulk_consumer(settings)
    await consumer.start()
    try:
        consumer.assign(list(bases))
        for tp, (r, _) in bases.items():
            consumer.seek(tp, r.start)
        next_offset = {tp: r.start for tp, (r, _) in bases.items()}
        pending = set(bases)
        last_progress = time.monotonic()
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=MAX_RECORDS)
            progressed = False
            for tp, records in batches.items():
                if tp not in pending:
                    continue
                r, range_base = bases[tp]
                inside = [rec for rec in records if r.start <= rec.offset < r.end]
                if records:
                    progressed = True
                    next_offset[tp] = max(next_offset[tp], records[-1].offset + 1)
                if inside:
                    yield RecordBatch(
                        range=r,
                        base=range_base,
                        offsets=[rec.offset for rec in inside],
                        keys=[rec.key for rec in inside],
                        values=[rec.value for rec in inside],
                    )
                if next_offset[tp] >= r.end:
                    pending.discard(tp)
                    consumer.pause(tp)
            if progressed:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > missing_timeout_s:
                tp = min(pending, key=lambda t: (t.topic, t.partition))
                r, _ = bases[tp]
                raise DataError(
                    f"records {next_offset[tp]} to {r.end - 1} of {r.topic}:{r.partition} did not arrive within "
                    f"{missing_timeout_s:g} s: the control message announces {r} but the partition ends at "
                    f"offset {next_offset[tp]}"
                )
    finally:
        await consumer.stop()
