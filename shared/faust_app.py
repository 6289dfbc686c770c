"""The one way to make a faust app for a service, and to read its records.

Every service with faust agents (orchestrator, control logger, metrics) gets
the same settings, tuned for the embedded broker (ENVIRONMENT.md): topics are
created up front with our partition counts and never declared by faust, and
group timeouts are short so that the first join takes seconds, not 30 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.types import EventT

from shared.kafka import Received
from shared.settings import Settings


def make_faust_app(settings: Settings, name: str) -> faust.App:
    """A faust app with the id ``{topic_prefix}-{name}`` (also its consumer group)."""
    return faust.App(
        f"{settings.topic_prefix}-{name}",
        broker=f"kafka://{settings.brokers.replace(',', ';kafka://')}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",  # durable state lives in PostgreSQL, never in faust tables
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,  # every topic is created up front, with our partition counts
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Short group timeouts: with faust's defaults the first join on the embedded broker takes 30 s.
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        broker_commit_every=1,
        broker_commit_interval=0.5,
    )


def received_of(event: EventT[Any]) -> Received:
    """A faust event as the record ``shared.kafka.deliver`` and the dead-letter helper take."""
    message = event.message
    headers = message.headers or []
    return Received(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=list(headers.items() if isinstance(headers, Mapping) else headers),
    )
