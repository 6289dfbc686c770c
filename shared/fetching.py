"""Adaptive fetch waits: short while records keep coming, long when a consumer is idle.

A consumer's fetch wait (``fetch_max_wait_ms``) is a trade: a short one answers
at the broker's floor, a long one keeps an idle consumer (and the broker that
answers it) quiet. The embedded broker holds a fetch that finds no data for up to
the whole wait (docs/performance.md has the figures), so one fixed wait is either
slow or busy. :class:`FetchWait` is the policy: the busy wait while records came
within ``busy_for_s``, then a wait that doubles every ``double_every_s`` up to
the idle wait, and after ``long_idle_after_s`` without a record the long idle
wait; a record (or :meth:`FetchWait.wake`, when an answer is expected) brings it
back to the busy wait at once. The first record after a pause of a few seconds
(a user between two clicks) costs at most one idle wait; after a long silence,
at most one long idle wait. Every held fetch costs the embedded broker CPU,
so the long wait is what keeps a stack nobody uses quiet.

:class:`AdaptiveConsumer` is how every consumer of ``shared.kafka.make_consumer``
applies it. aiokafka 0.14 has no public way to change the wait of a running
consumer; its fetcher reads ``Fetcher._fetch_max_wait_ms`` each time it builds a
``FetchRequest`` (``Fetcher._get_actions_per_node``), and builds the next request
only after ``getmany`` took the buffered records. So the wait is assigned to that
attribute right after each ``getmany``: the next request carries it. The other
ways are worse: a consumer per wait would rejoin the group (seconds on the
embedded broker), and a fetcher subclass would copy its private loop.
``tests/unit/test_fetching.py`` checks the attribute is still read there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

__all__ = ["AdaptiveConsumer", "FetchWait", "set_fetch_wait"]


class FetchWait:
    """The fetch wait to use now, from when records last came (pure logic, injectable clock)."""

    def __init__(
        self,
        busy_ms: int,
        idle_ms: int,
        *,
        long_idle_ms: int | None = None,
        long_idle_after_s: float = 30.0,
        busy_for_s: float = 1.0,
        double_every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if busy_ms < 0:
            raise ValueError(f"busy_ms must not be negative, not {busy_ms}")
        if idle_ms < busy_ms:
            raise ValueError(f"idle_ms ({idle_ms}) must be at least busy_ms ({busy_ms})")
        if long_idle_ms is not None and long_idle_ms < idle_ms:
            raise ValueError(f"long_idle_ms ({long_idle_ms}) must be at least idle_ms ({idle_ms})")
        if busy_for_s < 0 or double_every_s <= 0:
            raise ValueError("busy_for_s must not be negative and double_every_s must be positive")
        self.busy_ms = busy_ms
        self.idle_ms = idle_ms
        self.long_idle_ms = idle_ms if long_idle_ms is None else long_idle_ms
        self.long_idle_after_s = long_idle_after_s
        self.busy_for_s = busy_for_s
        self.double_every_s = double_every_s
        self.clock = clock
        # A consumer that just started expects records (a join, a replay): it starts busy.
        self._last_record = clock()

    def observe(self, records: int) -> int:
        """After a poll that brought ``records``: the wait of the next fetch, in ms."""
        if records:
            self._last_record = self.clock()
        return self.wait_ms()

    def wake(self) -> None:
        """Records are expected now (an answer to what was just sent): back to the busy wait."""
        self._last_record = self.clock()

    def wait_ms(self) -> int:
        since = self.clock() - self._last_record
        if since >= self.long_idle_after_s:
            return self.long_idle_ms
        quiet = since - self.busy_for_s
        if quiet < 0:
            return self.busy_ms
        # One doubling on leaving the busy window, one more every double_every_s; capped
        # (the exponent too: a consumer idle for days must not build a huge integer).
        doublings = min(int(quiet / self.double_every_s) + 1, 32)
        return min(self.idle_ms, max(1, self.busy_ms) << doublings)


def set_fetch_wait(consumer: Any, wait_ms: int) -> None:
    """Gives a started aiokafka consumer's next fetch request this wait (module docstring: why
    the private attribute). Before ``start`` (no fetcher yet) it does nothing."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and fetcher._fetch_max_wait_ms != wait_ms:
        fetcher._fetch_max_wait_ms = wait_ms


class AdaptiveConsumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka ships no types: its classes are Any
    """An aiokafka consumer whose fetch wait follows :class:`FetchWait`, set after every poll."""

    def __init__(self, *topics: str, fetch_wait: FetchWait, **options: Any) -> None:
        super().__init__(*topics, fetch_max_wait_ms=fetch_wait.wait_ms(), **options)
        self.fetch_wait = fetch_wait

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        batches = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        set_fetch_wait(self, self.fetch_wait.observe(sum(len(records) for records in batches.values())))
        return batches

    async def getone(self, *partitions: Any) -> Any:
        record = await super().getone(*partitions)
        set_fetch_wait(self, self.fetch_wait.observe(1))
        return record
