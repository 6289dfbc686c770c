"""The control logger: validates control messages, records data sources, announces them.

An offset is committed only after the data source row committed and
``DatasourceRecorded`` was acknowledged, or the record was dead-lettered with
its reason (see ``shared.faust_app``).
"""

from __future__ import annotations

import asyncio
import logging
import math

from aiokafka.client import AIOKafkaClient

from services.control_logger.handlers import record_datasource
from shared.db.uow import SqlUnitOfWork
from shared.faust_app import Service
from shared.kafka import Received
from shared.kafka_security import security_options
from shared.settings import Settings

log = logging.getLogger("kafkaml.control_logger")


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
        self._client = AIOKafkaClient(bootstrap_servers=self._settings.brokers, **security_options(self._settings))
        await self._client.bootstrap()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def partitions(self, topic: str) -> int | None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._fetched_at > self._max_age_s:
            await self._refresh()
        if topic not in self._partitions:
            # Never "missing" from metadata older than the message: a sink creates its topic just
            # before the control message, maybe after the last refresh. Waiting out the interval
            # keeps a stream of messages naming missing topics from hammering the broker.
            wait = self._min_refresh_s - (loop.time() - self._fetched_at)
            if wait > 0:
                await asyncio.sleep(wait)
            await self._refresh()
        return self._partitions.get(topic)

    async def _refresh(self) -> None:
        if self._client is None:
            raise RuntimeError("BrokerTopics.start() was not called")
        # All topics, never named ones: a metadata request naming a topic may auto-create it.
        metadata = await self._client.fetch_all_metadata()
        self._partitions = {t: len(metadata.partitions_for_topic(t) or ()) for t in metadata.topics()}
        self._fetched_at = asyncio.get_running_loop().time()


class ControlLogger(Service):
    """The producer, the broker's topics and the database, started once."""

    name = "control-logger"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.broker_topics = BrokerTopics(settings)

    def inbox(self) -> list[str]:
        return [self.settings.control_topic]

    async def on_start(self) -> None:
        await self.broker_topics.start()
        await self.mark_lost_datasources()
        log.info("control logger ready: consuming %s", self.settings.control_topic)

    async def mark_lost_datasources(self) -> None:
        """After a restart, the data sources whose topics the broker no longer has say so
        (an embedded broker keeps its topics in memory), instead of pointing at nothing."""
        async with SqlUnitOfWork(self.sessions) as uow:
            lost = await uow.datasources.mark_lost(self.broker_topics.partitions)
            await uow.commit()
        for row in lost:
            log.warning("data source %d of deployment %d is lost: %s", row.id, row.deployment_id, row.lost)

    async def process(self, received: Received) -> None:
        async with SqlUnitOfWork(self.sessions) as uow:
            outgoing = await record_datasource(received, uow, topics=self.broker_topics)
            await uow.commit()
        await self.publish(outgoing)
        for answer in outgoing:
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
