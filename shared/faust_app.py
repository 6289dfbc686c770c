"""The one way to make a faust app for a service, and to read its records.

Every service with faust agents (orchestrator, control logger, metrics) gets
the same settings, tuned for the embedded broker (ENVIRONMENT.md): topics are
created up front with our partition counts and never declared by faust, and
group timeouts are short so that the first join takes seconds, not 30 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust
from faust import Worker
from faust.types import EventT

from shared.db.engine import make_engine, make_sessionmaker
from shared.kafka import Producer, Received, deliver, ensure_topics
from shared.settings import Settings, get_settings
from shared.topics import topics_for


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


class ServiceRuntime:
    """What a faust service's agents need, started once: settings, topics, the database and
    the producer (answers, dead letters). Subclasses add their own parts in ``on_start``."""

    consumer: str = "service"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = topics_for(settings)
        self.engine = make_engine(settings.db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.producer = Producer(settings)
        self._started = asyncio.Event()
        self._starting = False

    async def start(self) -> None:
        if self._starting:
            await self._started.wait()
            return
        self._starting = True
        await self.producer.start()
        await self.on_start()
        self._started.set()

    async def on_start(self) -> None:
        """Starts what the subclass adds (called once, after the producer)."""

    async def handle(self, received: Received) -> None:
        """One record: ``process`` until it succeeds or the record is dead-lettered."""
        await self.start()
        await deliver(
            received, self.process, producer=self.producer, dead_letter_topic=self.topics.dead_letters,
            consumer=self.consumer,
        )  # fmt: skip

    async def process(self, received: Received) -> None:
        raise NotImplementedError


def run_worker(create_app: Callable[[Settings], faust.App]) -> None:
    """The entry point of a faust service: create the topics, then run the app's worker."""
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(ensure_topics(settings))
    Worker(create_app(settings), loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()
