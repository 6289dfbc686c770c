"""The control logger's faust app: a thin agent that validates, records, announces, acks.

faust acks a record when the agent takes the next one, and commits acked
offsets periodically, so an offset is committed only after ``deliver``
returned: the data source row committed and ``DatasourceRecorded`` was
acknowledged by the broker, or the record was dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import faust
from aiokafka.client import AIOKafkaClient

from services.control_logger.handlers import record_datasource
from shared.db.uow import SqlUnitOfWork
from shared.faust_app import ServiceRuntime, make_faust_app, received_of
from shared.kafka import Received
from shared.settings import Settings, get_settings
from shared.topics import topic_of

log = logging.getLogger("kafkaml.control_logger")

CONSUMER = "control-logger"


def create_app(settings: Settings) -> faust.App:
    app = make_faust_app(settings, "control-logger")
    runtime = Runtime(settings)
    control = app.topic(settings.control_topic, value_type=bytes, key_type=bytes, allow_empty=True)

    @app.agent(control, name="record_datasources")
    async def record_datasources(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await runtime.handle(received_of(event))

    @app.task  # type: ignore[untyped-decorator]  # faust's task decorator carries no types
    async def start_runtime() -> None:
        await runtime.start()

    app.kafkaml_runtime = runtime  # type: ignore[attr-defined]  # for tests and shutdown
    return app


class BrokerTopics:
    """Topic → partition count, from the broker's metadata, cached briefly.

    A topic missing from the cache forces a refresh (at most every ``min_refresh_s``),
    so a data topic created just before its control message is found, while a stream
    of messages naming missing topics does not hammer the broker.
    """

    def __init__(self, settings: Settings, *, max_age_s: float = 5.0, min_refresh_s: float = 0.5) -> None:
        self._settings = settings
        self._max_age_s = max_age_s
        self._min_refresh_s = min_refresh_s
        self._client: AIOKafkaClient | None = None
        self._partitions: dict[str, int] = {}
        self._fetched_at = -math.inf

    async def start(self) -> None:
        # aiokafka binds its client to the running loop, so it is created here, not in __init__.
        self._client = AIOKafkaClient(bootstrap_servers=self._settings.brokers)
        await self._client.bootstrap()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def partitions(self, topic: str) -> int | None:
        age = asyncio.get_running_loop().time() - self._fetched_at
        if age > self._max_age_s or (topic not in self._partitions and age > self._min_refresh_s):
            await self._refresh()
        return self._partitions.get(topic)

    async def _refresh(self) -> None:
        if self._client is None:
            raise RuntimeError("BrokerTopics.start() was not called")
        # All topics, never named ones: a metadata request naming a topic may auto-create it.
        metadata = await self._client.fetch_all_metadata()
        self._partitions = {t: len(metadata.partitions_for_topic(t) or ()) for t in metadata.topics()}
        self._fetched_at = asyncio.get_running_loop().time()


class Runtime(ServiceRuntime):
    """What the agent needs: a producer, the broker's topics and the database, started once."""

    consumer = CONSUMER

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.broker_topics = BrokerTopics(settings)

    async def on_start(self) -> None:
        await self.broker_topics.start()
        log.info("control logger ready: consuming %s", self.settings.control_topic)

    async def process(self, received: Received) -> None:
        async with SqlUnitOfWork(self.sessions) as uow:
            outgoing = await record_datasource(received, uow, topics=self.broker_topics)
            await uow.commit()
        for answer in outgoing:
            await self.producer.publish(topic_of(self.topics, answer.kind, answer.type), answer)
            log.info(
                "control message %s:%s:%s → %s: data source %s of deployment %s, %s",
                received.topic,
                received.partition,
                received.offset,
                answer.type,
                answer.payload.id,
                answer.payload.deployment_id,
                answer.payload.topic,
            )


def app_from_env() -> Any:
    return create_app(get_settings())
