"""Loading a trainer's data: the announced ranges read and decoded once, then held or streamed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import numpy as np

from services.trainer.data.control import FoundControl
from services.trainer.data.datasets import InMemoryData, StreamingData, TrainingData
from services.trainer.data.errors import DataError
from services.trainer.data.ranges import check_topics, iter_ranges
from services.trainer.data.split import SPLIT_SEED, split_indices
from shared.codecs import decoder_for, too_many_bad
from shared.events.training import SampleCounts
from shared.settings import Settings

log = logging.getLogger("kafkaml.trainer")


# The most decoded data kept in memory when the caller names no budget (the job spec does:
# ``cache_mb``, from the orchestrator's KAFKAML_TRAINER_CACHE_MB).
DEFAULT_BUDGET_BYTES = 2048 * 1024 * 1024
# How often reading reports its progress (a data set of millions of samples takes a while).
_PROGRESS_EVERY_S: Final = 1.0


def _estimated_bytes(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> int:
    """Bytes a decoded sample costs in training (inputs become float32 at least)."""
    if len(x) == 0:
        return 0
    per_x = math.prod(x.shape[1:]) * max(4, x.dtype.itemsize)
    per_y = math.prod(y.shape[1:]) * max(4, y.dtype.itemsize)
    return int(len(x) * (per_x + per_y))


async def load_training_data(
    settings: Settings,
    found: FoundControl,
    *,
    memory_budget: int | None = None,
    missing_timeout_s: float = 30.0,
    seed: int = SPLIT_SEED,
    on_progress: Callable[[int, int], Awaitable[None]] | None = None,
) -> TrainingData:
    """Reads and decodes the announced ranges once; fails with DataError when that cannot work.

    ``on_progress(read, announced)`` is awaited at the start, about every second while reading, and
    at the end. Bad samples are skipped and counted (see :mod:`shared.codecs`); more than
    10% of the announced samples bad fails the job, naming the first one.
    """
    message = found.message
    try:
        ranges = message.ranges()
    except ValueError as exc:
        raise DataError(
            f"the control message at offset {found.offset} announces no bounded ranges ({exc}): "
            "a bounded training reads topic:partition:start:end ranges; to train on an unbounded stream, "
            "deploy with `incremental` or announce the topic with incremental: true"
        ) from None
    announced = sum(r.count for r in ranges)
    if message.total_msg is not None and message.total_msg != announced:
        log.warning("the control message says total_msg=%d but its ranges hold %d", message.total_msg, announced)
    if announced == 0:
        raise DataError(f"the control message at offset {found.offset} announces no records ({message.topic})")
    await check_topics(settings, ranges)
    budget = DEFAULT_BUDGET_BYTES if memory_budget is None else memory_budget
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
    reported = time.monotonic()
    if on_progress is not None:
        await on_progress(0, announced)
    async with contextlib.aclosing(reader):
        async for batch in reader:
            decoded = decoder.decode(batch.values, batch.keys)
            seen += len(batch.values)
            if on_progress is not None and time.monotonic() - reported >= _PROGRESS_EVERY_S:
                reported = time.monotonic()
                await on_progress(seen, announced)
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
    if on_progress is not None:
        await on_progress(seen, announced)
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
        ordering = None
        if len(order) > 1 and not bool(np.all(order[1:] > order[:-1])):
            ordering = np.argsort(order, kind="stable")
        data: TrainingData = InMemoryData(
            decoder,
            x_all,
            y_all,
            validation_rate=message.validation_rate,
            test_rate=message.test_rate,
            bad=bad,
            seed=seed,
            order=ordering,
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
