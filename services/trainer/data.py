"""A trainer's data: its job spec, its control message, the announced records, the split.

Reading rules (see /work/shared/ENVIRONMENT.md): the embedded broker's end
offsets are wrong when records arrive in batches, so nothing here is computed
from end offsets. The control message's ranges say which records to read;
records are fetched from ``start`` until ``end`` (exclusive) per partition,
and a partition that stops short of ``end`` is waited for, for a bounded time.

The decoded data set is kept in memory across epochs (upstream Kafka-ML
re-reads the topic every epoch). When it would not fit in the memory budget
(:func:`memory_budget_bytes`), the trainer falls back to re-reading the
ranges from Kafka once per epoch (:class:`StreamingData`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.trainer.publishing import JobFailure
from shared.codecs import Decoder, decoder_for, too_many_bad
from shared.control import ControlMessage, TopicRange, deployment_id_from_key, parse_control
from shared.errors import Invalid
from shared.events.training import DatasourceRef, JobSpec, SampleCounts, TrainJob
from shared.jobs import JobSpecNotFound, find_job_message
from shared.kafka import make_consumer
from shared.settings import Settings

__all__ = [
    "SPLIT_SEED",
    "DataError",
    "FoundControl",
    "InMemoryData",
    "Part",
    "RecordBatch",
    "StreamingData",
    "TrainingData",
    "check_topics",
    "find_control_message",
    "find_job_spec",
    "iter_ranges",
    "load_training_data",
    "memory_budget_bytes",
    "split_counts",
    "split_indices",
]

log = logging.getLogger("kafkaml.trainer")

Part = Literal["train", "validation", "test"]
PARTS: Final[tuple[Part, ...]] = ("train", "validation", "test")

# One seed for every split: the same data set gives the same test set to every
# deployment that trains on it, so their test metrics compare.
SPLIT_SEED: Final = 42

# Large fetches: reading a data set is a bulk transfer.
MAX_PARTITION_FETCH_BYTES: Final = 4 * 1024 * 1024
FETCH_MAX_BYTES: Final = 50 * 1024 * 1024
MAX_RECORDS: Final = 10_000


# How long a scan of the control topic waits for more records before it counts as caught up.
_IDLE_POLL_MS: Final = 1000

T = TypeVar("T")


class DataError(JobFailure):
    """The job cannot get its data; the message says why, in words a user acts on."""


def memory_budget_bytes() -> int:
    """The most decoded data kept in memory (``KAFKAML_TRAINER_CACHE_MB``, default 2 GiB)."""
    return Settings().trainer_cache_mb * 1024 * 1024


# --- the job spec -------------------------------------------------------------


async def find_job_spec(settings: Settings, job_id: str, timeout_s: float = 60.0) -> JobSpec:
    """The ``TrainJob`` with this id, from the jobs topic."""
    try:
        found = await find_job_message(settings, job_id, TrainJob, timeout_s=timeout_s)
    except JobSpecNotFound as exc:
        raise DataError(exc.detail) from None
    assert found is not None  # no stop event: found or raised
    return found.payload


# --- the control message ------------------------------------------------------


@dataclass(frozen=True)
class FoundControl:
    """A control message for our deployment, and where it was on the control topic."""

    message: ControlMessage
    control_topic: str
    partition: int
    offset: int
    deployment_id: int

    def datasource(self) -> DatasourceRef:
        m = self.message
        return DatasourceRef(
            control_topic=self.control_topic,
            partition=self.partition,
            offset=self.offset,
            deployment_id=self.deployment_id,
            topic=m.topic,
            input_format=m.input_format,
            input_config=m.input_config,
            validation_rate=m.validation_rate,
            test_rate=m.test_rate,
            total_msg=m.total_msg,
        )


def _control_for(record: Any, deployment_id: int) -> FoundControl | None:
    try:
        if deployment_id_from_key(record.key) != deployment_id:
            return None
    except ValueError:
        return None  # no key: not addressed to anybody (the control logger dead-letters it)
    try:
        message = parse_control(record.value)
    except Invalid as exc:
        log.warning(
            "skipping the control message at %s:%d offset %d for deployment %d: %s",
            record.topic,
            record.partition,
            record.offset,
            deployment_id,
            exc.detail,
        )
        return None
    return FoundControl(message, record.topic, record.partition, record.offset, deployment_id)


async def find_control_message(settings: Settings, deployment_id: int, timeout_s: float) -> FoundControl:
    """The control message announcing this deployment's data.

    The control topic is read from the beginning (no group). The latest
    matching message present at start-up wins (a data set re-sent for the
    deployment replaces the previous one); when none is there yet, the first
    one that arrives. A malformed one is skipped with a warning.
    """
    topic = settings.control_topic
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        latest: FoundControl | None = None
        caught_up = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batches = await consumer.getmany(timeout_ms=int(min(_IDLE_POLL_MS, remaining * 1000)) + 1)
            if not batches:
                if latest is not None:
                    return latest
                caught_up = True
                continue
            for records in batches.values():
                for record in records:
                    found = _control_for(record, deployment_id)
                    if found is None:
                        continue
                    if caught_up:
                        return found
                    latest = found
        if latest is not None:
            return latest
    finally:
        await consumer.stop()
    raise DataError(
        f"no data arrived for deployment {deployment_id} within {timeout_s:g} s: "
        f"send a control message keyed by the deployment id to {topic}"
    )


# --- reading the announced ranges ----------------------------------------------


async def check_topics(settings: Settings, ranges: Sequence[TopicRange]) -> None:
    """Raises DataError when a range names a topic or partition the brokers do not have.

    Only listing, never describing, a missing topic: a metadata request for a
    missing topic may create it (the embedded broker does).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.brokers)
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


# --- splitting ------------------------------------------------------------------


def split_counts(n: int, validation_rate: float, test_rate: float) -> tuple[int, int, int]:
    """(train, validation, test) sizes: test = round(n * test_rate), validation = round(n * validation_rate)."""
    test = min(n, round(n * test_rate))
    validation = min(n - test, round(n * validation_rate))
    return n - test - validation, validation, test


def split_indices(
    n: int, validation_rate: float, test_rate: float, seed: int = SPLIT_SEED
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]
]:
    """Indices of the train, validation and test samples: a seeded shuffle, then cut.

    Upstream Kafka-ML splits by position: the last samples read become the
    test set. A data source that keys its records by label on a
    multi-partition topic puts each class in one partition, so the samples
    read last are a few classes only, and the test (and validation) sets are
    skewed. Shuffling first with a fixed seed keeps the class proportions in
    every part (up to sampling noise) and gives the same split every time the
    same data set is used.
    """
    _, validation, test = split_counts(n, validation_rate, test_rate)
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return order[test + validation :], order[test : test + validation], order[:test]


# --- the data a training uses ------------------------------------------------------


class TrainingData(ABC):
    """The decoded, split data set, whether held in memory or re-read from Kafka."""

    decoder: Decoder
    counts: SampleCounts
    sample_shape: tuple[int, ...]
    x_dtype: np.dtype[Any]
    y_dtype: np.dtype[Any]
    label_shape: tuple[int, ...]

    def size(self, part: Part) -> int:
        return {"train": self.counts.train, "validation": self.counts.validation, "test": self.counts.test}[part]

    @abstractmethod
    def arrays(self, part: Part) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
        """The part's (x, y) in memory; None when the data set is streamed."""

    @abstractmethod
    def batches(self, part: Part, batch_size: int) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        """The part in batches. Streamed data re-reads Kafka: call it from a training thread, not the loop."""


class InMemoryData(TrainingData):
    def __init__(
        self,
        decoder: Decoder,
        x: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        *,
        validation_rate: float,
        test_rate: float,
        bad: int,
        seed: int = SPLIT_SEED,
    ) -> None:
        self.decoder = decoder
        train, validation, test = split_indices(len(x), validation_rate, test_rate, seed)
        self._parts: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {
            "train": (x[train], y[train]),
            "validation": (x[validation], y[validation]),
            "test": (x[test], y[test]),
        }
        self.counts = SampleCounts(train=len(train), validation=len(validation), test=len(test), bad=bad)
        self.sample_shape = tuple(x.shape[1:])
        self.x_dtype = x.dtype
        self.y_dtype = y.dtype
        self.label_shape = tuple(y.shape[1:])

    def arrays(self, part: Part) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        return self._parts[part]

    def batches(self, part: Part, batch_size: int) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        x, y = self._parts[part]
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]


class StreamingData(TrainingData):
    """Re-reads the announced ranges from Kafka on every pass (data sets beyond the memory budget).

    The split is decided per announced position (a seeded shuffle of all
    positions), so every pass puts each record in the same part without
    keeping any data. The async reading runs on the job's event loop; the
    training thread pulls batches from it.
    """

    def __init__(
        self,
        settings: Settings,
        found: FoundControl,
        *,
        assignment: np.ndarray[Any, np.dtype[np.int8]],
        counts: SampleCounts,
        sample_shape: tuple[int, ...],
        x_dtype: np.dtype[Any],
        y_dtype: np.dtype[Any],
        label_shape: tuple[int, ...],
        decoder: Decoder,
        missing_timeout_s: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.found = found
        self.assignment = assignment
        self.counts = counts
        self.sample_shape = sample_shape
        self.x_dtype = x_dtype
        self.y_dtype = y_dtype
        self.label_shape = label_shape
        self.decoder = decoder
        self.missing_timeout_s = missing_timeout_s
        self._loop = loop

    def arrays(self, part: Part) -> None:
        return None

    async def _stream(
        self, part: Part, batch_size: int
    ) -> AsyncIterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        wanted = PARTS.index(part)
        decoder = decoder_for(self.found.message.input_format, self.found.message.input_config)
        xs: list[np.ndarray[Any, Any]] = []
        ys: list[np.ndarray[Any, Any]] = []
        held = 0
        reader = iter_ranges(self.settings, self.found.message.ranges(), missing_timeout_s=self.missing_timeout_s)
        async with contextlib.aclosing(reader):
            async for batch in reader:
                decoded = decoder.decode(batch.values, batch.keys)
                if decoded.y is None:  # keys were given: never None
                    continue
                positions = np.asarray([batch.position(i) for i in decoded.good_indices], dtype=np.int64)
                mask = self.assignment[positions] == wanted if len(positions) else np.zeros(0, dtype=bool)
                if not mask.any():
                    continue
                xs.append(decoded.x[mask])
                ys.append(decoded.y[mask])
                held += int(mask.sum())
                while held >= batch_size:
                    x, y = np.concatenate(xs), np.concatenate(ys)
                    yield x[:batch_size], y[:batch_size]
                    xs, ys = [x[batch_size:]], [y[batch_size:]]
                    held -= batch_size
        if held:
            yield np.concatenate(xs), np.concatenate(ys)

    def batches(self, part: Part, batch_size: int) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        return _pull(self._loop, lambda: self._stream(part, batch_size))


def _pull(loop: asyncio.AbstractEventLoop, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """A blocking iterator over an async iterator that runs on ``loop`` (from another thread)."""
    if _on_loop_thread(loop):
        raise RuntimeError("streamed data must be read from a training thread, not the event loop")
    iterator = make()

    async def step() -> T:
        return await iterator.__anext__()

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    try:
        while True:
            try:
                item = run(step())
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(aclose(), loop)
            # Never block the loop's own thread (a generator may be collected there).
            if not _on_loop_thread(loop):
                future.result(timeout=30)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# --- loading --------------------------------------------------------------------------


def _estimated_bytes(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> int:
    """Bytes a decoded sample costs in training (inputs become float32 at least)."""
    if len(x) == 0:
        return 0
    per_x = int(np.prod(x.shape[1:], dtype=np.int64)) * max(4, x.dtype.itemsize)
    per_y = int(np.prod(y.shape[1:], dtype=np.int64)) * max(4, y.dtype.itemsize)
    return int(len(x) * (per_x + per_y))


async def load_training_data(
    settings: Settings,
    found: FoundControl,
    *,
    memory_budget: int | None = None,
    missing_timeout_s: float = 30.0,
    seed: int = SPLIT_SEED,
) -> TrainingData:
    """Reads and decodes the announced ranges once; fails with DataError when that cannot work.

    Bad samples are skipped and counted (see :mod:`shared.codecs`); more than
    10% of the announced samples bad fails the job, naming the first one.
    """
    message = found.message
    try:
        ranges = message.ranges()
    except ValueError as exc:
        raise DataError(
            f"the control message at offset {found.offset} announces no bounded ranges ({exc}): "
            "this trainer reads topic:partition:start:end ranges; online (unbounded) training is not supported"
        ) from None
    announced = sum(r.count for r in ranges)
    if message.total_msg is not None and message.total_msg != announced:
        log.warning("the control message says total_msg=%d but its ranges hold %d", message.total_msg, announced)
    if announced == 0:
        raise DataError(f"the control message at offset {found.offset} announces no records ({message.topic})")
    await check_topics(settings, ranges)
    budget = memory_budget_bytes() if memory_budget is None else memory_budget
    decoder = decoder_for(message.input_format, message.input_config)

    started = time.monotonic()
    xs: list[np.ndarray[Any, Any]] = []
    ys: list[np.ndarray[Any, Any]] = []
    positions: list[np.ndarray[Any, Any]] = []
    held_bytes = 0
    seen = 0
    good = 0
    bad = 0
    first_bad: str | None = None
    in_memory = True
    sample_shape: tuple[int, ...] = ()
    label_shape: tuple[int, ...] = ()
    x_dtype: np.dtype[Any] = np.dtype(np.float32)
    y_dtype: np.dtype[Any] = np.dtype(np.float32)
    reader = iter_ranges(settings, ranges, missing_timeout_s=missing_timeout_s)
    async with contextlib.aclosing(reader):
        async for batch in reader:
            decoded = decoder.decode(batch.values, batch.keys)
            seen += len(batch.values)
            if decoded.bad:
                bad += len(decoded.bad)
                if first_bad is None:
                    index, reason = decoded.bad[0]
                    first_bad = f"{batch.range.topic}:{batch.range.partition} offset {batch.offsets[index]}: {reason}"
            if decoded.y is None or len(decoded.x) == 0:
                continue
            good += len(decoded.x)
            sample_shape, label_shape = tuple(decoded.x.shape[1:]), tuple(decoded.y.shape[1:])
            x_dtype, y_dtype = decoded.x.dtype, decoded.y.dtype
            positions.append(np.asarray([batch.position(i) for i in decoded.good_indices], dtype=np.int64))
            if not in_memory:
                continue
            xs.append(decoded.x)
            ys.append(decoded.y)
            held_bytes += _estimated_bytes(decoded.x, decoded.y)
            projected = held_bytes * announced / max(seen, 1)
            if projected > budget:
                log.info(
                    "the data set would take about %.0f MB decoded, over the %.0f MB budget (%s): "
                    "re-reading it from Kafka every epoch instead",
                    projected / 2**20,
                    budget / 2**20,
                    "KAFKAML_TRAINER_CACHE_MB",
                )
                in_memory = False
                xs, ys = [], []
    elapsed = time.monotonic() - started
    log.info(
        "read %d samples in %.2f s (%.0f samples/s), %d could not be decoded",
        seen,
        elapsed,
        seen / elapsed if elapsed > 0 else float("inf"),
        bad,
    )
    if too_many_bad(bad, announced):
        raise DataError(f"{bad} of {announced} samples could not be decoded (first: {first_bad})")
    if good == 0:
        raise DataError(f"none of the {announced} announced samples could be decoded")
    if bad:
        log.warning("%d of %d samples could not be decoded and are skipped (first: %s)", bad, announced, first_bad)

    if in_memory:
        # Partitions are fetched interleaved as they come: back to the announced order, so that
        # the same data set always gives the same split.
        x_all, y_all, order = np.concatenate(xs), np.concatenate(ys), np.concatenate(positions)
        if len(order) > 1 and not bool(np.all(order[1:] > order[:-1])):
            ordering = np.argsort(order, kind="stable")
            x_all, y_all = x_all[ordering], y_all[ordering]
        data: TrainingData = InMemoryData(
            decoder,
            x_all,
            y_all,
            validation_rate=message.validation_rate,
            test_rate=message.test_rate,
            bad=bad,
            seed=seed,
        )
    else:
        # The split is per announced position, so that every pass agrees without keeping data.
        _, validation, test = split_indices(announced, message.validation_rate, message.test_rate, seed)
        assignment = np.zeros(announced, dtype=np.int8)
        assignment[validation] = 1
        assignment[test] = 2
        per_part = np.bincount(assignment[np.concatenate(positions)], minlength=3)
        data = StreamingData(
            settings,
            found,
            assignment=assignment,
            counts=SampleCounts(train=int(per_part[0]), validation=int(per_part[1]), test=int(per_part[2]), bad=bad),
            sample_shape=sample_shape,
            x_dtype=x_dtype,
            y_dtype=y_dtype,
            label_shape=label_shape,
            decoder=decoder,
            missing_timeout_s=missing_timeout_s,
            loop=asyncio.get_running_loop(),
        )
    if data.counts.train == 0:
        raise DataError(
            f"no samples left to train on: {good} decoded, validation_rate={message.validation_rate}, "
            f"test_rate={message.test_rate}"
        )
    log.info(
        "split (seed %d): %d train, %d validation, %d test samples%s",
        seed,
        data.counts.train,
        data.counts.validation,
        data.counts.test,
        "" if in_memory else " (streamed from Kafka every epoch)",
    )
    return data
