"""Micro-batching: gather consumed records into one model call.

A batch closes when it holds ``max_batch`` records, or when ``max_wait_s``
has passed since its *first* record arrived, whichever comes first. An idle
stream costs nothing: the batcher waits for a first record in polls of
``idle_poll_s`` (so that a stop request is seen within that time) and the
clock only starts once one arrived.

Records come from a fetch function shaped like ``AIOKafkaConsumer.getmany``
(``timeout_ms``, ``max_records`` → records by partition). The batch is a flat
list; records of one partition keep their order, which is all the contract
asks (predictions "in input order per partition").

On the embedded broker a fetch that finds no data is held for the consumer's
whole ``fetch_max_wait_ms``, so waiting for more records
rarely finds any at low load: ``max_wait_ms`` is a throughput knob for busy
streams, and 0 means "take what is buffered now, never wait".
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Fetch", "MicroBatcher"]

R = TypeVar("R")

# (timeout_ms, max_records) → {partition: records}, as AIOKafkaConsumer.getmany.
Fetch = Callable[[int, int], Awaitable[Mapping[Any, Sequence[R]]]]


class MicroBatcher(Generic[R]):
    """Gathers records from ``fetch`` into batches bounded in size and in time."""

    def __init__(
        self,
        fetch: Fetch[R],
        *,
        max_batch: int,
        max_wait_s: float,
        idle_poll_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self.fetch = fetch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.idle_poll_ms = max(1, int(idle_poll_s * 1000))
        self.clock = clock

    async def next_batch(self, stop: asyncio.Event | None = None) -> list[R]:
        """The next batch; empty when nothing arrived within one idle poll (or a stop was asked)."""
        if stop is not None and stop.is_set():
            return []
        batch: list[R] = []
        self._extend(batch, await self.fetch(self.idle_poll_ms, self.max_batch))
        if not batch:
            return batch
        deadline = self.clock() + self.max_wait_s
        while len(batch) < self.max_batch and not (stop is not None and stop.is_set()):
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            # Rounded up (a 0 ms fetch only looks at the buffer: it would spin until the deadline),
            # less a hair of float error (3 ms left must not become a 4 ms wait).
            more = await self.fetch(math.ceil(remaining * 1000 - 1e-6), self.max_batch - len(batch))
            self._extend(batch, more)
        return batch

    @staticmethod
    def _extend(batch: list[R], fetched: Mapping[Any, Sequence[R]]) -> None:
        for records in fetched.values():
            batch.extend(records)
