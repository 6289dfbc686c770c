"""The control message that announces a deployment's data, found without scanning the whole topic.

The orchestrator hands the trainer, in its spec, the announcements the control logger had
recorded for the deployment when the job was created (``JobSpec.announced``) and a time a
little before that (``JobSpec.control_since_ms``). The trainer reads the control topic from
the first record at or after that time (``offsets_for_times``) up to its end at subscription:
every announcement the lookup could have missed (sent after it, or sent before it but not
recorded yet by a control logger that lags less than the look-back) has a timestamp at or
after that time, so it is among the records read. Reading up to the end offsets known at
subscription, instead of waiting for an empty poll, makes "caught up" immediate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from services.trainer.data.errors import DataError
from shared.control import ControlMessage, deployment_id_from_key, parse_control
from shared.errors import Invalid
from shared.events.training import DatasourceRef
from shared.kafka import make_consumer
from shared.settings import Settings

log = logging.getLogger("kafkaml.trainer")

# How long one poll of the control topic waits for records.
_POLL_MS: Final = 500


@dataclass(frozen=True)
class FoundControl:
    """A control message for our deployment, and where it was on the control topic."""

    message: ControlMessage
    control_topic: str
    partition: int
    offset: int
    deployment_id: int
    timestamp: int | None = None

    @classmethod
    def of(cls, ref: DatasourceRef) -> FoundControl:
        """An announcement the orchestrator knew of (recorded by the control logger)."""
        message = ControlMessage(
            topic=ref.topic,
            input_format=ref.input_format,
            input_config=ref.input_config,
            validation_rate=ref.validation_rate,
            test_rate=ref.test_rate,
            total_msg=ref.total_msg,
        )
        return cls(message, ref.control_topic, ref.partition, ref.offset, ref.deployment_id, ref.timestamp)

    def order(self) -> tuple[int, int]:
        """Newer announcements sort later: by timestamp (offsets restart with an embedded broker), then offset."""
        return (self.timestamp if self.timestamp is not None else -1, self.offset)

    def datasource(self) -> DatasourceRef:
        m = self.message
        return DatasourceRef(
            control_topic=self.control_topic,
            partition=self.partition,
            offset=self.offset,
            timestamp=self.timestamp,
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
    return FoundControl(message, record.topic, record.partition, record.offset, deployment_id, record.timestamp)


async def _assign(consumer: Any, topic: str, deadline: float) -> list[TopicPartition]:
    """Every partition of the control topic, assigned (no group): the topic may be created late."""
    while True:
        await consumer.topics()  # refreshes the metadata
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            return assigned
        if time.monotonic() >= deadline:
            return []
        await asyncio.sleep(0.5)


async def _seek_since(consumer: Any, partitions: list[TopicPartition], since_ms: int | None) -> None:
    """Each partition's position: its first record at or after ``since_ms`` (its end when every record
    is older); the beginning without a time, or when the broker cannot look offsets up by time."""
    if since_ms is None:
        await consumer.seek_to_beginning(*partitions)
        return
    try:
        found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
    except KafkaError as exc:
        log.warning("cannot look up control offsets by time (%s): reading the control topic from the start", exc)
        await consumer.seek_to_beginning(*partitions)
        return
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        at = found.get(tp)
        # No record that recent: Kafka answers none; the embedded broker offset 0 with timestamp -1.
        recent = at is not None and at.timestamp >= 0 and at.offset >= 0
        consumer.seek(tp, at.offset if at is not None and recent else ends[tp])


async def find_control_message(
    settings: Settings,
    deployment_id: int,
    timeout_s: float,
    *,
    known: Sequence[DatasourceRef] = (),
    since_ms: int | None = None,
    on_waiting: Callable[[], Awaitable[None]] | None = None,
) -> FoundControl:
    """The control message announcing this deployment's data.

    The latest announcement present at start-up wins (``known`` ones, and those read from
    ``since_ms`` up to the end offsets at subscription: a data set re-sent for the
    deployment replaces the previous one); when there is none yet, the first one that
    arrives (``on_waiting`` is awaited once, when the trainer starts to wait). A malformed
    one is skipped with a warning.
    """
    topic = settings.control_topic
    deadline = time.monotonic() + timeout_s
    latest = max((FoundControl.of(ref) for ref in known), key=FoundControl.order, default=None)
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = await _assign(consumer, topic, deadline)
        if partitions:
            ends = await consumer.end_offsets(partitions)
            await _seek_since(consumer, partitions, since_ms)
            behind = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            waiting = False
            while True:
                if not behind and latest is not None:
                    return latest
                if not behind and not waiting and on_waiting is not None:
                    waiting = True
                    await on_waiting()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                batches = await consumer.getmany(timeout_ms=int(min(_POLL_MS, remaining * 1000)) + 1)
                for tp, records in batches.items():
                    for record in records:
                        found = _control_for(record, deployment_id)
                        if found is None:
                            continue
                        if tp not in behind:
                            return found  # arrived after we caught up: the first one wins
                        if latest is None or found.order() >= latest.order():
                            latest = found
                for tp in list(behind):
                    if await consumer.position(tp) >= ends[tp]:
                        behind.discard(tp)
        if latest is not None:
            return latest
    finally:
        await consumer.stop()
    raise DataError(
        f"no data arrived for deployment {deployment_id} within {timeout_s:g} s: "
        f"send a control message keyed by the deployment id to {topic}"
    )
