"""The control logger's handler: a plain async function.

It takes a record of the control topic (upstream Kafka-ML's control message,
not our envelope), a unit of work and a view of the broker's topics, and
returns the event to publish once the transaction has committed. A message
that can never be recorded raises ``Invalid`` naming the problem; the app
dead-letters it with that reason and the stream goes on. That includes upstream's
semi-supervised form (an ``unsupervised_topic``), which ``parse_control`` refuses:
this platform does not pseudo-label, and training on the labelled part alone would
ignore the rest of the announcement without a word.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from shared.control import ControlMessage, deployment_id_from_key, parse_control
from shared.db.tables import Datasource
from shared.db.uow import UnitOfWork
from shared.errors import Invalid
from shared.events import DatasourceRecord, DatasourceRecorded, Envelope
from shared.kafka import Received

# Event ids of DatasourceRecorded derive from the control message's position, so that a
# redelivered control message announces its data source again under the same id
# (consumers downstream dedupe on it) without storing the id anywhere.
DATASOURCE_EVENT_NAMESPACE = uuid.UUID("6f1c35d2-4a57-4c59-9d0e-7b0b7d3f8a21")


class TopicCatalog(Protocol):
    """The broker's topics as the handler needs them (the app's answers from cached metadata)."""

    async def partitions(self, topic: str) -> int | None:
        """The topic's partition count, or None when the broker has no such topic."""
        ...


def named_partitions(control: ControlMessage) -> list[tuple[str, int | None]]:
    """Every (topic, partition) the message names; the partition is None for a bare topic (online form)."""
    if control.total_msg is not None:
        return [(r.topic, r.partition) for r in control.ranges()]
    named: list[tuple[str, int | None]] = []
    for part in control.topic.split(","):
        # Kafka topic names cannot contain ':', so the name is what precedes the first one.
        pieces = part.strip().split(":")
        partition = int(pieces[1]) if len(pieces) == 4 and pieces[1].isdigit() else None
        named.append((pieces[0], partition))
    return named


async def check_topics(control: ControlMessage, topics: TopicCatalog) -> None:
    """Raises ``Invalid`` unless every topic (and partition) the message names exists."""
    for name, partition in named_partitions(control):
        if not name:
            raise Invalid(f"topic {control.topic!r} names an empty topic", field="topic")
        count = await topics.partitions(name)
        if count is None:
            raise Invalid(f"topic {name!r} named in the control message does not exist on the broker", field="topic")
        if partition is not None and partition >= count:
            raise Invalid(
                f"topic {name!r} has {count} partition(s); the control message names partition {partition}",
                field="topic",
            )


def datasource_event_id(received: Received) -> uuid.UUID:
    position = f"{received.topic}:{received.partition}:{received.offset}"
    # The timestamp too: after an embedded broker's restart a new message may take an old position.
    if received.timestamp is not None:
        position += f":{received.timestamp}"
    return uuid.uuid5(DATASOURCE_EVENT_NAMESPACE, position)


def datasource_record(row: Datasource) -> DatasourceRecord:
    return DatasourceRecord(
        id=row.id,
        deployment_id=row.deployment_id,
        topic=row.topic,
        input_format=row.input_format,
        input_config=row.input_config,
        validation_rate=row.validation_rate,
        test_rate=row.test_rate,
        total_msg=row.total_msg,
        description=row.description,
        unsupervised_topic=row.unsupervised_topic,
        dataset_restrictions=row.dataset_restrictions,
        incremental=row.incremental,
        control_topic=row.control_topic,
        partition=row.partition,
        offset=row.offset,
        created_at=row.created_at,
        lost=row.lost,
    )


async def record_datasource(received: Received, uow: UnitOfWork, *, topics: TopicCatalog) -> list[Envelope]:
    """Validates a control message, records its data source once, and announces it.

    A redelivered message (same control topic position and timestamp) finds its
    row and is announced again with the same event id; it adds no row.
    """
    control = parse_control(received.value)
    try:
        deployment_id = deployment_id_from_key(received.key)
    except ValueError as exc:
        raise Invalid(str(exc), field="key") from exc
    await check_topics(control, topics)
    row = await uow.datasources.record(
        Datasource(
            deployment_id=deployment_id,
            topic=control.topic,
            input_format=control.input_format,
            input_config=control.input_config,
            validation_rate=control.validation_rate,
            test_rate=control.test_rate,
            total_msg=control.total_msg,
            description=control.description,
            unsupervised_topic=control.unsupervised_topic,
            dataset_restrictions=control.dataset_restrictions,
            incremental=control.incremental,
            control_topic=received.topic,
            partition=received.partition,
            offset=received.offset,
            record_timestamp=received.timestamp if received.timestamp is not None else -1,
        )
    )
    event = DatasourceRecorded(
        event_id=datasource_event_id(received), occurred_at=row.created_at, payload=datasource_record(row)
    )
    return [event]
