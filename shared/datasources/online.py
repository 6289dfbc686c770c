"""Online RAW data sources (upstream's ``OnlineRawSink``): an unbounded stream for incremental training.

The sink announces the topic once, with the online control message (bare topic
name, ``incremental: true``, ``total_msg: null``), before its first record goes
out: the incremental trainer reads the topic from the start, so announcing first
loses nothing and lets training start while the stream is still being written.
``online_close()`` (and ``close()``, which means the same here) only flushes and
disconnects: an online stream has no end to announce.

As upstream, an online sink has no test split (``test_rate`` is 0), and one that
names an ``unsupervised_topic`` announces only when ``send_online_control_msg()``
is called (upstream's semi-supervised form, which this platform refuses).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from shared.control import ControlMessage
from shared.datasources.async_sink import (
    DEFAULT_CONTROL_TOPIC,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_REQUEST_TIMEOUT_MS,
    Stream,
)
from shared.datasources.raw import AsyncRawSink, Shape
from shared.datasources.sync_sink import KafkaMLSink
from shared.kafka_security import KafkaSecurity


class AsyncOnlineRawSink(AsyncRawSink):
    """Online RAW data source, asyncio flavour. Parameters as ``OnlineRawSink``."""

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        deployment_id: int | str | None = None,
        data_type: str | None = None,
        label_type: str | None = None,
        description: str = "",
        data_reshape: Shape = None,
        label_reshape: Shape = None,
        validation_rate: float = 0.0,
        control_topic: str = DEFAULT_CONTROL_TOPIC,
        group_id: str = "sink",
        unsupervised_topic: str | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        dataset_restrictions: Mapping[str, Any] | str | None = None,
        partitions: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        super().__init__(
            boostrap_servers,
            topic,
            deployment_id,
            data_type,
            label_type,
            description,
            data_reshape,
            label_reshape,
            validation_rate,
            0.0,  # upstream's online sinks have no test split
            control_topic,
            group_id,
            unsupervised_topic,
            bootstrap_servers=bootstrap_servers,
            dataset_restrictions=dataset_restrictions,
            partitions=partitions,
            max_in_flight=max_in_flight,
            request_timeout_ms=request_timeout_ms,
            producer_config=producer_config,
            security=security,
        )
        self.announced = False
        # Concurrent first sends (asyncio.gather) must announce once, and before either record.
        self._announcing = asyncio.Lock()

    async def _enqueue(self, stream: Stream, value: bytes, key: bytes | None) -> None:
        # Every send (this class's and the blocking wrapper's) passes here after the sample was
        # encoded, so the format is known: announce, then send the record.
        if not self.announced and stream is self._main and self._unsupervised is None:
            async with self._announcing:
                if not self.announced:
                    await self._announce(self.build_control_message(online=True))
        await super()._enqueue(stream, value, key)

    async def _announce(self, message: ControlMessage) -> None:
        await super()._announce(message)
        if message.incremental:
            self.announced = True

    async def close(self) -> ControlMessage | None:
        """As ``online_close()``; returns the online control message (None if none went out)."""
        await self.online_close()
        return self.control_message


class OnlineRawSink(KafkaMLSink[AsyncOnlineRawSink]):
    """Online RAW data source with upstream Kafka-ML's constructor and methods (blocking).

    Args (upstream's, in upstream's order):
        boostrap_servers, topic, deployment_id, data_type, label_type, description, data_reshape,
        label_reshape, validation_rate, control_topic, group_id (unused), unsupervised_topic:
            as for ``RawSink`` (no ``test_rate``: an online stream has no test split).

    Keyword-only additions: bootstrap_servers, dataset_restrictions, partitions, max_in_flight,
    request_timeout_ms, producer_config, security, as for ``RawSink``.

    ``send(data, label)`` sends the online control message before the first record;
    ``online_close()`` flushes and disconnects (a failed delivery raises ``DeliveryError``).
    """

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        deployment_id: int | str | None = None,
        data_type: str | None = None,
        label_type: str | None = None,
        description: str = "",
        data_reshape: Shape = None,
        label_reshape: Shape = None,
        validation_rate: float = 0.0,
        control_topic: str = DEFAULT_CONTROL_TOPIC,
        group_id: str = "sink",
        unsupervised_topic: str | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        dataset_restrictions: Mapping[str, Any] | str | None = None,
        partitions: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        super().__init__(
            AsyncOnlineRawSink(
                boostrap_servers,
                topic,
                deployment_id,
                data_type,
                label_type,
                description,
                data_reshape,
                label_reshape,
                validation_rate,
                control_topic,
                group_id,
                unsupervised_topic,
                bootstrap_servers=bootstrap_servers,
                dataset_restrictions=dataset_restrictions,
                partitions=partitions,
                max_in_flight=max_in_flight,
                request_timeout_ms=request_timeout_ms,
                producer_config=producer_config,
                security=security,
            )
        )

    @property
    def announced(self) -> bool:
        """Whether the online control message went out."""
        return self.sink.announced

    @property
    def data_type(self) -> str | None:
        return self.sink.data_type

    @property
    def label_type(self) -> str | None:
        return self.sink.label_type

    @property
    def data_reshape(self) -> str | None:
        return self.sink.data_reshape

    @property
    def label_reshape(self) -> str | None:
        return self.sink.label_reshape
