"""The micro-batcher: a batch closes when full, or ``max_wait`` after its first record."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from services.inferencer.batching import MicroBatcher


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """``getmany`` over scripted arrivals: each call returns the next step, a step may take time."""

    def __init__(self, clock: FakeClock, steps: Sequence[tuple[float, Mapping[str, list[int]]]]) -> None:
        self.clock = clock
        self.steps = list(steps)
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> Mapping[str, list[int]]:
        self.calls.append((timeout_ms, max_records))
        if not self.steps:
            self.clock.now += timeout_ms / 1000  # nothing arrives: the whole timeout passes
            return {}
        elapsed, records = self.steps.pop(0)
        self.clock.now += elapsed
        # Like aiokafka: never more than max_records in all.
        out: dict[str, list[int]] = {}
        left = max_records
        for tp, items in records.items():
            out[tp] = items[:left]
            left -= len(out[tp])
        return out


def batcher(
    consumer: FakeConsumer, clock: FakeClock, *, max_batch: int = 4, max_wait_s: float = 0.005
) -> MicroBatcher[int]:
    return MicroBatcher(consumer.getmany, max_batch=max_batch, max_wait_s=max_wait_s, idle_poll_s=0.1, clock=clock)


async def test_a_full_batch_closes_at_once() -> None:
    clock = FakeClock()
    consumer = FakeConsumer(clock, [(0.0, {"p0": [1, 2, 3], "p1": [10, 11, 12]})])
    assert await batcher(consumer, clock).next_batch() == [1, 2, 3, 10]
    assert consumer.calls == [(100, 4)]  # one fetch: the size bound was reached


async def test_a_batch_gathers_until_max_wait_after_its_first_record() -> None:
    clock = FakeClock()
    steps = [(0.0, {"p0": [1]}), (0.002, {"p0": [2]}), (0.002, {"p1": [7]}), (0.002, {"p0": [3]})]
    consumer = FakeConsumer(clock, steps)
    batch = await batcher(consumer, clock, max_batch=100).next_batch()
    # 1 at 0 ms, 2 at 2 ms, 7 at 4 ms, 3 at 6 ms: a fetch that ends past the deadline still
    # brings its records, and the batch closes.
    assert batch == [1, 2, 7, 3]
    # Each fetch waits only what is left of the 5 ms, asking only for what the batch can still take.
    assert consumer.calls == [(100, 100), (5, 99), (3, 98), (1, 97)]


async def test_records_of_one_partition_keep_their_order() -> None:
    clock = FakeClock()
    consumer = FakeConsumer(clock, [(0.0, {"p0": [1, 2], "p1": [5]}), (0.001, {"p1": [6], "p0": [3]})])
    batch = await batcher(consumer, clock, max_batch=10).next_batch()
    assert [r for r in batch if r < 5] == [1, 2, 3] and [r for r in batch if r >= 5] == [5, 6]


async def test_no_wait_takes_what_is_there() -> None:
    clock = FakeClock()
    consumer = FakeConsumer(clock, [(0.0, {"p0": [1]}), (0.0, {"p0": [2]})])
    assert await batcher(consumer, clock, max_wait_s=0).next_batch() == [1]
    assert len(consumer.calls) == 1


async def test_an_idle_stream_gives_an_empty_batch_after_one_poll() -> None:
    clock = FakeClock()
    consumer = FakeConsumer(clock, [])
    assert await batcher(consumer, clock).next_batch() == []
    assert consumer.calls == [(100, 4)]


async def test_a_stop_ends_the_gathering() -> None:
    clock = FakeClock()
    stop = asyncio.Event()
    stop.set()
    consumer = FakeConsumer(clock, [(0.0, {"p0": [1]})])
    assert await batcher(consumer, clock).next_batch(stop) == []
    assert consumer.calls == []


def test_bounds_are_checked() -> None:
    clock = FakeClock()
    consumer = FakeConsumer(clock, [])
    with pytest.raises(ValueError, match="max_batch"):
        batcher(consumer, clock, max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        batcher(consumer, clock, max_wait_s=-1)
