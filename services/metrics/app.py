"""The metrics service's faust app: one agent that stores batches of training events.

Writes are batched: the agent takes up to ``BATCH_MAX`` records (or what came
within ``BATCH_WITHIN_S``) and applies them in one transaction, together with
the ``processed_messages`` bookkeeping (split into several only when the records
exceed ``TRANSACTION_MAX_BYTES``: a burst of artifact chunks). faust acks the batch's records only
when the agent asks for the next batch, i.e. after the transaction committed
(or a record was dead-lettered), so an offset is committed only once its effect
is durable.

Per batch: each record is decoded and verified through ``deliver`` (an undecodable or
unsigned record is dead-lettered and the batch goes on); the batch is applied, retrying transient
failures; if it fails for another reason, its messages are applied one by one
through ``deliver``, so only the one at fault is dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from services.metrics.handlers import ROUTER
from services.metrics.uow import SqlMetricsUnitOfWork
from shared.db.repositories import Housekeeping
from shared.events import Envelope
from shared.faust_app import Service
from shared.handling import handle_batch_once
from shared.kafka import Received, is_transient
from shared.process import Backoff

log = logging.getLogger("kafkaml.metrics")

BATCH_MAX = 200
BATCH_WITHIN_S = 0.2
# Artifact chunks are ~700 KB on the wire: 200 of them would hold 140 MB in one transaction
# (and twice that in memory), so a batch is also split into transactions of at most this size.
TRANSACTION_MAX_BYTES = 16 * 1024 * 1024


class MetricsService(Service):
    """Stores batches of training and inference events (see the module docstring)."""

    name = "metrics"
    batch_max = BATCH_MAX
    batch_within_s = BATCH_WITHIN_S

    def inbox(self) -> list[str]:
        return [self.topics.events, self.topics.artifacts]

    async def on_start(self) -> None:
        log.info("metrics ready: consuming %s and %s", self.topics.events, self.topics.artifacts)

    async def housekeep(self) -> None:
        """Also folds old inference statistics and drops chunks of artifacts that never completed."""
        await super().housekeep()
        async with self.sessions() as session:
            tidy = Housekeeping(session)
            folded = await tidy.fold_statistics(timedelta(hours=self.settings.statistics_fold_after_h))
            dropped = await tidy.purge_orphan_chunks(timedelta(hours=self.settings.orphan_chunks_after_h))
            await session.commit()
        if folded.read or dropped:
            log.info(
                "housekeeping: %d statistics rows folded into %d; %d orphan artifact chunks dropped",
                folded.read,
                folded.written,
                dropped,
            )

    async def handle_batch(self, records: Sequence[Received]) -> None:
        await self.start()
        wanted: list[tuple[Received, Envelope]] = []

        async def take(received: Received) -> None:
            # Raises Undecodable or Forged: ``deliver`` dead-letters the record. The events topic
            # carries every other service's events too: only ours are kept (and verified).
            message = self.keyring.open(received.value, received.headers, ROUTER.handles)
            if message is not None:
                wanted.append((received, message))

        for received in records:
            await self.deliver(received, take)
        for group in split_by_size(wanted, TRANSACTION_MAX_BYTES):
            await self.store(group)

    async def store(self, batch: Sequence[tuple[Received, Envelope]]) -> None:
        delays = Backoff().delays()
        while True:
            try:
                await self.apply([message for _, message in batch])
                return
            except Exception as exc:
                if not is_transient(exc):
                    log.warning(
                        "batch of %s failed (%s: %s); storing its messages one by one",
                        len(batch),
                        type(exc).__name__,
                        exc,
                    )
                    break
                delay = next(delays)
                log.warning("transient failure (%s: %s), retrying the batch in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
        for received, message in batch:

            async def apply_alone(_: Received, message: Envelope = message) -> None:
                await self.apply([message])

            await self.deliver(received, apply_alone)

    async def apply(self, messages: Sequence[Envelope]) -> None:
        uow = SqlMetricsUnitOfWork(self.sessions)
        outcome = await handle_batch_once(messages, ROUTER, uow=uow, consumer=self.name)
        await self.publish(outcome.outgoing)
        log.info("%s", uow.tally.summary(skipped=outcome.skipped))


def split_by_size(batch: Sequence[tuple[Received, Envelope]], max_bytes: int) -> list[list[tuple[Received, Envelope]]]:
    """Consecutive groups whose records total at most ``max_bytes`` (a larger record is a group alone)."""
    groups: list[list[tuple[Received, Envelope]]] = []
    size = 0
    for item in batch:
        length = len(item[0].value or b"")
        if not groups or size + length > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += length
    return groups
