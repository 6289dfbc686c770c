"""The metrics service's faust app: one agent that stores batches of training events.

Writes are batched: the agent takes up to ``BATCH_MAX`` records (or what came
within ``BATCH_WITHIN_S``) and applies them in one transaction, together with
the ``processed_messages`` bookkeeping (split into several only when the records
exceed ``TRANSACTION_MAX_BYTES``: a burst of artifact chunks). faust acks the batch's records only
when the agent asks for the next batch, i.e. after the transaction committed
(or a record was dead-lettered), so an offset is committed only once its effect
is durable.

Per batch: each record is decoded through ``deliver`` (an undecodable record is
dead-lettered and the batch goes on); the batch is applied, retrying transient
failures; if it fails for another reason, its messages are applied one by one
through ``deliver``, so only the one at fault is dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, cast

import faust

from services.metrics.handlers import HANDLERS, handle
from services.metrics.uow import SqlMetricsUnitOfWork
from shared.events import Envelope, decode
from shared.faust_app import ServiceRuntime, make_faust_app, received_of
from shared.handling import handle_batch_once
from shared.kafka import Handle, Received, deliver, is_transient
from shared.settings import Settings, get_settings
from shared.topics import topic_of, topics_for

log = logging.getLogger("kafkaml.metrics")

CONSUMER = "metrics"
BATCH_MAX = 200
BATCH_WITHIN_S = 0.2
# Artifact chunks are ~700 KB on the wire: 200 of them would hold 140 MB in one transaction
# (and twice that in memory), so a batch is also split into transactions of at most this size.
TRANSACTION_MAX_BYTES = 16 * 1024 * 1024
MAX_BACKOFF_S = 30.0


def create_app(settings: Settings) -> faust.App:
    topics = topics_for(settings)
    app = make_faust_app(settings, "metrics")
    runtime = Runtime(settings)
    inbox = app.topic(topics.events, topics.artifacts, value_type=bytes, key_type=bytes, allow_empty=True)

    @app.agent(inbox, name="store_metrics")
    async def store_metrics(stream: faust.StreamT[bytes]) -> None:
        # take_events, not take: the batch needs each record's position and headers (to dead-letter
        # it), and it acks the records only after this loop body returned. faust's StreamT
        # interface omits the method its Stream class has.
        batches = cast("faust.Stream[bytes]", stream).take_events(BATCH_MAX, within=BATCH_WITHIN_S)
        async for events in batches:
            await runtime.handle_batch([received_of(event) for event in events])

    @app.task  # type: ignore[untyped-decorator]  # faust's task decorator carries no types
    async def start_runtime() -> None:
        await runtime.start()

    app.kafkaml_runtime = runtime  # type: ignore[attr-defined]  # for tests and shutdown
    return app


class Runtime(ServiceRuntime):
    """What the agent needs: a producer (answers, dead letters) and the database, started once."""

    consumer = CONSUMER

    async def on_start(self) -> None:
        log.info("metrics ready: consuming %s and %s", self.topics.events, self.topics.artifacts)

    async def handle_batch(self, records: Sequence[Received]) -> None:
        await self.start()
        wanted: list[tuple[Received, Envelope]] = []

        async def take(received: Received) -> None:
            message = decode(received.value)  # raises Undecodable: ``deliver`` dead-letters the record
            if message.type in HANDLERS:  # the events topic carries every other service's events too
                wanted.append((received, message))

        for received in records:
            await self._deliver(received, take)
        for group in split_by_size(wanted, TRANSACTION_MAX_BYTES):
            await self.store(group)

    async def store(self, batch: Sequence[tuple[Received, Envelope]]) -> None:
        delay = 0.2
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
                log.warning("transient failure (%s: %s), retrying the batch in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        for received, message in batch:

            async def apply_alone(_: Received, message: Envelope = message) -> None:
                await self.apply([message])

            await self._deliver(received, apply_alone)

    async def apply(self, messages: Sequence[Envelope]) -> None:
        uow = SqlMetricsUnitOfWork(self.sessions)
        outcome = await handle_batch_once(messages, handle, uow=uow, consumer=CONSUMER)
        for answer in outcome.outgoing:
            await self.producer.publish(topic_of(self.topics, answer.kind, answer.type), answer)
        log.info("%s", uow.tally.summary(skipped=outcome.skipped))

    async def _deliver(self, received: Received, step: Handle) -> None:
        await deliver(
            received, step, producer=self.producer, dead_letter_topic=self.topics.dead_letters, consumer=CONSUMER
        )


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


def app_from_env() -> Any:
    return create_app(get_settings())
