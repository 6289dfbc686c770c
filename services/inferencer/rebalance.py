"""Rebalances: a revoked partition waits for every batch in flight to be committed.

Every output of the batches in flight is acknowledged and their offsets
committed before another member gets the partitions, so a clean rebalance
causes no duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition

__all__ = ["DrainOnRevoke", "Drainable", "describe_partitions"]

log = logging.getLogger("kafkaml.inferencer")


class Drainable(Protocol):
    """What the listener needs of the serving loop."""

    @property
    def batch_lock(self) -> asyncio.Lock: ...

    async def drain(self) -> None: ...


class DrainOnRevoke:
    """The consumer's rebalance listener (aiokafka calls these two coroutines)."""

    def __init__(self, loop: Drainable) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.loop.batch_lock:
            await self.loop.drain()
        if revoked:
            log.info("partitions revoked: %s", describe_partitions(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", describe_partitions(assigned) or "none")


# aiokafka checks isinstance(listener, ConsumerRebalanceListener), an ABC: registering
# keeps its check without subclassing a class that carries no type information.
ConsumerRebalanceListener.register(DrainOnRevoke)


def describe_partitions(tps: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(tps))
