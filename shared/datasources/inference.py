"""Values to predict in Avro (upstream's ``AvroInference``): schemaless Avro records to an inference's input topic.

The same producer and encoder as the training sinks (confirmed deliveries,
round-robin over the partitions, so every replica gets its share), but nothing
is announced: an inference already knows its input format from its deployment
(``input_format: "AVRO"``, ``input_config: {"data_scheme": ...}``). Records
carry no key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from shared.control import ControlMessage
from shared.datasources.async_sink import DEFAULT_MAX_IN_FLIGHT, DEFAULT_REQUEST_TIMEOUT_MS
from shared.datasources.avro import AsyncAvroSink, SchemaInput
from shared.datasources.errors import SinkError
from shared.datasources.sync_sink import KafkaMLSink
from shared.kafka_security import KafkaSecurity

# The sink core keys control messages by deployment; an inference source sends none.
_NO_DEPLOYMENT = 0


def _announces_nothing() -> NoReturn:
    raise SinkError("an inference source announces nothing: its inference knows the input format")


class AsyncAvroInference(AsyncAvroSink):
    """``AvroInference``, asyncio flavour: ``await source.send(record)`` … ``await source.close()``."""

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        data_scheme_filename: str | Path | None = None,
        group_id: str = "sink",
        *,
        data_scheme: SchemaInput | None = None,
        bootstrap_servers: str | Sequence[str] | None = None,
        partitions: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        super().__init__(
            boostrap_servers,
            topic,
            _NO_DEPLOYMENT,
            data_scheme_filename,
            group_id=group_id,
            data_scheme=data_scheme,
            bootstrap_servers=bootstrap_servers,
            partitions=partitions,
            max_in_flight=max_in_flight,
            request_timeout_ms=request_timeout_ms,
            producer_config=producer_config,
            security=security,
        )

    async def send(self, data: Any, label: Any = None) -> None:
        """Sends one record to predict (a dict matching the schema, or bytes already encoded)."""
        if label is not None:
            raise SinkError("an inference source sends values only, no labels")
        await self.send_value(data)

    async def send_control_msg(self) -> ControlMessage:
        _announces_nothing()

    async def send_online_control_msg(self) -> ControlMessage:
        _announces_nothing()

    async def close(self) -> ControlMessage | None:
        """Flushes (a failed delivery raises ``DeliveryError``) and disconnects."""
        await self.online_close()
        return None


class AvroInference(KafkaMLSink[AsyncAvroInference]):
    """Sends Avro-encoded values to an inference's input topic, with upstream Kafka-ML's constructor (blocking).

    Args (upstream's, in upstream's order):
        boostrap_servers: Kafka brokers (upstream's spelling; ``bootstrap_servers=`` works too).
        topic: the inference's input topic.
        data_scheme_filename: the ``.avsc`` file of the record schema (the inference's ``data_scheme``).
        group_id: accepted for compatibility; unused.

    Keyword-only additions: data_scheme (a dict or JSON text instead of the file), partitions,
    max_in_flight, request_timeout_ms, producer_config, security, as for ``RawSink``.

    ``send(data)`` encodes one record (a record that does not fit the schema raises ValueError
    naming the field); ``close()`` flushes and disconnects.
    """

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        data_scheme_filename: str | Path | None = None,
        group_id: str = "sink",
        *,
        data_scheme: SchemaInput | None = None,
        bootstrap_servers: str | Sequence[str] | None = None,
        partitions: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        super().__init__(
            AsyncAvroInference(
                boostrap_servers,
                topic,
                data_scheme_filename,
                group_id,
                data_scheme=data_scheme,
                bootstrap_servers=bootstrap_servers,
                partitions=partitions,
                max_in_flight=max_in_flight,
                request_timeout_ms=request_timeout_ms,
                producer_config=producer_config,
                security=security,
            )
        )

    @property
    def data_schema(self) -> str:
        return self.sink.data_schema

    def send(self, data: Any, label: Any = None) -> None:
        """Sends one record to predict; returns once enqueued (a failed delivery raises on ``close()``)."""
        if label is not None:
            raise SinkError("an inference source sends values only, no labels")
        self.send_value(data)
