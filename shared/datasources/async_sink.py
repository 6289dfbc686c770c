"""The asyncio core of the data-source sinks: upstream Kafka-ML's ``KafkaMLSink``, rebuilt on aiokafka.

A sink streams samples to a data topic and, on ``close()``, announces them with
one control message (docs/contracts.md) naming the exact offset ranges it
wrote. What differs from upstream on purpose:

- the ranges come from the produce acknowledgements (:mod:`.ranges`);
- every send is confirmed: a failed delivery raises ``DeliveryError`` at the
  latest on ``flush()``/``close()``, and then no control message is sent, so a
  trainer never waits for data that did not land;
- samples are spread over the partitions round-robin instead of by the hash of
  their key: the key is the label, and hashing it would put each class in one
  partition.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from tqdm import tqdm

from shared.control import ControlMessage, TopicRange, key_for_deployment
from shared.datasources.arguments import check_rates, deployment_number, servers
from shared.datasources.errors import DeliveryError, SinkError
from shared.datasources.ranges import AckRanges, ranges_text
from shared.kafka_security import KafkaSecurity, security_options, start_client
from shared.settings import Settings

log = logging.getLogger(__name__)


DEFAULT_CONTROL_TOPIC = "KAFKA_ML_CONTROL_TOPIC"
# Enough to keep the producer's batches full, small enough to keep memory flat.
DEFAULT_MAX_IN_FLIGHT = 5_000
DEFAULT_REQUEST_TIMEOUT_MS = 30_000


class Stream:
    """One topic the sink writes to: where the next record goes and what came back."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.partitions: list[int] = []
        self.acks = AckRanges()
        self.sent = 0
        self._next = 0

    def next_partition(self) -> int | None:
        if not self.partitions:
            return None  # let the producer's partitioner pick
        partition = self.partitions[self._next % len(self.partitions)]
        self._next += 1
        return partition


class Encoder(Protocol):
    """Turns samples into the bytes of one wire format (RAW or AVRO)."""

    def encode(self, data: Any, label: Any = None) -> tuple[bytes, bytes | None]: ...
    def encode_data(self, data: Any) -> bytes: ...
    @property
    def input_config(self) -> dict[str, Any]: ...


class AsyncKafkaMLSink(abc.ABC):
    """Streams encoded samples, confirms every delivery, and announces the data set on ``close()``.

    Subclasses set ``encoder``, which turns ``(data, label)`` into ``(value, key)``
    bytes and says what goes into ``input_config``. Use as ``async with`` (the control message is sent
    when the block ends normally; after an exception nothing is announced).
    """

    input_format: ClassVar[Literal["RAW", "AVRO"]]

    def __init__(
        self,
        *,
        boostrap_servers: str | Sequence[str] | None,
        bootstrap_servers: str | Sequence[str] | None,
        topic: str | None,
        deployment_id: int | str | None,
        description: str,
        validation_rate: float,
        test_rate: float,
        control_topic: str,
        group_id: str,
        unsupervised_topic: str | None,
        dataset_restrictions: Mapping[str, Any] | str | None,
        partitions: int | None,
        progress: bool,
        total: int | None,
        max_in_flight: int,
        request_timeout_ms: int,
        producer_config: Mapping[str, Any] | None,
        security: KafkaSecurity | None = None,
    ) -> None:
        if not topic:
            raise ValueError("topic is required")
        if deployment_id is None:
            raise ValueError("deployment_id is required")
        if not control_topic:
            raise ValueError("control_topic must not be empty")
        if partitions is not None and partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        check_rates(validation_rate, test_rate)
        self.boostrap_servers = servers(bootstrap_servers, boostrap_servers)  # upstream's spelling, kept
        self.topic = topic
        self.deployment_id = deployment_number(deployment_id)
        self.description = description
        self.validation_rate = validation_rate
        self.test_rate = test_rate
        self.control_topic = control_topic
        # Upstream's sink needed a consumer group to read end offsets; acknowledgements need none.
        self.group_id = group_id
        self.unsupervised_topic = unsupervised_topic or None  # upstream treats "" as none too
        if self.unsupervised_topic:
            log.warning("semi-supervised training is not supported: the control logger will refuse this sink's data")
        self.dataset_restrictions: Mapping[str, Any] | str = dataset_restrictions or {}
        self.partitions = partitions
        self.progress = progress
        self.total = total
        self.max_in_flight = max_in_flight
        self.request_timeout_ms = request_timeout_ms
        self._producer_config = dict(producer_config or {})
        # Resolved now, so that a credential that cannot work fails here, naming its setting.
        self._login = security or KafkaSecurity.of(Settings())
        self._security = security_options(self._login)

        self._main = Stream(topic)
        self._unsupervised = Stream(self.unsupervised_topic) if self.unsupervised_topic else None
        self._producer: Any = None  # AIOKafkaProducer: bound to the loop that starts it
        self._pending: dict[asyncio.Future[Any], Stream] = {}
        self._failed = 0
        self._first_error: BaseException | None = None
        self._bar: tqdm[Any] | None = None
        self._announced_at: int | None = None  # records sent when the last control message went out
        self._closed = False
        self.control_message: ControlMessage | None = None
        self.elapsed_s = 0.0
        self._started_at: float | None = None

    # --- what subclasses provide: an encoder for their format ---

    encoder: Encoder

    def encode(self, data: Any, label: Any) -> tuple[bytes, bytes | None]:
        """``(value, key)`` for one sample; raises ValueError for a sample that does not fit."""
        return self.encoder.encode(data, label)

    def encode_value(self, data: Any) -> bytes:
        """The value bytes of a sample without label."""
        return self.encoder.encode_data(data)

    @property
    def input_config(self) -> dict[str, Any]:
        """The control message's ``input_config`` (known once the format is)."""
        return self.encoder.input_config

    # --- upstream's names ---

    @property
    def total_messages(self) -> int:
        """Samples sent to the data topic so far (upstream's attribute)."""
        return self._main.sent

    @property
    def topic_partitions(self) -> list[int]:
        """The data topic's partitions (known once started)."""
        return list(self._main.partitions)

    def ranges(self) -> list[TopicRange]:
        """The acknowledged ranges of the data topic so far."""
        return self._main.acks.ranges(self.topic)

    # --- life cycle ---

    async def start(self) -> None:
        """Connects (and creates the topics when ``partitions`` is given). Sends start it when needed."""
        if self._closed:
            raise SinkError("this sink is closed")
        if self._producer is not None:
            return
        if self.partitions is not None:
            await self._create_missing_topics()
        options: dict[str, Any] = {
            "bootstrap_servers": self.boostrap_servers,
            "acks": "all",
            # The embedded broker lacks InitProducerId; duplicates on retry are the accepted cost.
            "enable_idempotence": False,
            "linger_ms": 5,
            "max_batch_size": 256 * 1024,
            "max_request_size": 8 * 1024 * 1024,
            "request_timeout_ms": self.request_timeout_ms,
            **self._security,
        }
        options.update(self._producer_config)
        producer = AIOKafkaProducer(**options)
        try:
            try:
                await start_client(producer.start, self._login, self.boostrap_servers)
            except KafkaError as exc:
                raise SinkError(f"cannot reach the Kafka brokers at {self.boostrap_servers}: {exc}") from exc
            for stream in self._streams():
                try:
                    stream.partitions = sorted(await producer.partitions_for(stream.name))
                except KafkaError as exc:
                    raise SinkError(
                        f"no metadata for topic {stream.name!r} (a cluster that does not create topics on use "
                        f"needs it created first, or pass partitions=N): {exc}"
                    ) from exc
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self._started_at = time.monotonic()
        if self.progress and self.total is not None:
            self._bar = tqdm(total=self.total, unit="msg", desc=f"sending to {self.topic}", leave=True)
        log.info("sink for deployment %d writes to %s %s", self.deployment_id, self.topic, self._main.partitions)

    async def _create_missing_topics(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.boostrap_servers, request_timeout_ms=self.request_timeout_ms, **self._security
        )
        try:
            await start_client(admin.start, self._login, self.boostrap_servers)
            existing = set(await admin.list_topics())
            missing = [s.name for s in self._streams() if s.name not in existing]
            if missing:
                response = await admin.create_topics(
                    [NewTopic(name, num_partitions=self.partitions, replication_factor=1) for name in missing]
                )
                for name, code, *_ in response.topic_errors:
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise SinkError(f"could not create topic {name!r}: Kafka error code {code}")
                log.info("created %s with %d partitions", ", ".join(missing), self.partitions)
        except KafkaError as exc:
            raise SinkError(f"cannot reach the Kafka brokers at {self.boostrap_servers}: {exc}") from exc
        finally:
            await admin.close()

    def _streams(self) -> list[Stream]:
        return [self._main] if self._unsupervised is None else [self._main, self._unsupervised]

    # --- sending ---

    async def send(self, data: Any, label: Any = None) -> None:
        """Sends one sample (``label`` None: no key). Returns once enqueued; see ``flush``."""
        value, key = self.encode(data, label)
        await self._enqueue(self._main, value, key)

    async def send_value(self, data: Any) -> None:
        """Sends one sample without label to the data topic (upstream's ``send_value``)."""
        await self._enqueue(self._main, self.encode_value(data), None)

    async def unsupervised_send(self, data: Any) -> None:
        """Sends one sample without label to ``unsupervised_topic`` (announced in the control message)."""
        if self._unsupervised is None:
            raise SinkError("unsupervised_send needs the sink's unsupervised_topic")
        await self._enqueue(self._unsupervised, self.encode_value(data), None)

    async def send_many(self, data: Iterable[Any], labels: Iterable[Any] | None = None) -> int:
        """Sends every sample of ``data`` (with the matching label); returns how many."""
        count = 0
        if labels is None:
            for sample in data:
                await self.send(sample)
                count += 1
            return count
        for sample, label in zip(data, labels, strict=True):
            await self.send(sample, label)
            count += 1
        return count

    async def _enqueue(self, stream: Stream, value: bytes, key: bytes | None) -> None:
        self._raise_if_failed()
        if self._producer is None:
            await self.start()
        future = await self._producer.send(stream.name, value, key=key, partition=stream.next_partition())
        stream.sent += 1
        self._pending[future] = stream
        future.add_done_callback(self._settle)
        # Waiting for the oldest acknowledgements keeps memory flat without stalling the pipeline.
        while len(self._pending) >= self.max_in_flight:
            await asyncio.wait(list(self._pending), return_when=asyncio.FIRST_COMPLETED)
            self._settle_done()
            self._raise_if_failed()

    def _settle(self, future: asyncio.Future[Any]) -> None:
        stream = self._pending.pop(future, None)
        if stream is None:
            return  # settled already (by _settle_done)
        error = asyncio.CancelledError("send cancelled") if future.cancelled() else future.exception()
        if error is not None:
            self._failed += 1
            if self._first_error is None:
                self._first_error = error
            return
        metadata = future.result()
        stream.acks.record(metadata.partition, metadata.offset)
        if self._bar is not None:
            self._bar.update(1)

    def _settle_done(self) -> None:
        # Callbacks run soon after a future completes, not necessarily before a waiter resumes.
        for future in [f for f in self._pending if f.done()]:
            self._settle(future)

    def _raise_if_failed(self) -> None:
        if self._first_error is not None:
            attempted = sum(s.sent for s in self._streams())
            raise DeliveryError(self._failed, attempted, self._first_error)

    async def flush(self) -> None:
        """Waits until every record sent so far is acknowledged; raises ``DeliveryError`` if any failed."""
        if self._pending:
            await asyncio.wait(list(self._pending))
            self._settle_done()
        self._raise_if_failed()

    # --- announcing ---

    def build_control_message(self, *, online: bool = False) -> ControlMessage:
        """The control message for what was acknowledged so far (or the online form naming the bare topic)."""
        unsupervised: str | None = None
        if self._unsupervised is not None:
            unsupervised = ranges_text(self._unsupervised.acks.ranges(self._unsupervised.name)) or None
        if online:
            topic, total = self.topic, None
            if self._unsupervised is not None:
                # Upstream's online form with an unsupervised topic names the labelled ranges written
                # so far and the unsupervised topic bare.
                unsupervised = self._unsupervised.name
                if self._main.acks.count:
                    topic, total = ranges_text(self.ranges()), self._main.sent
        else:
            if self._main.acks.count == 0:
                raise SinkError(f"no samples were sent to {self.topic}: nothing to announce")
            topic, total = ranges_text(self.ranges()), self._main.sent
            if self._main.acks.span != self._main.acks.count:
                log.warning(
                    "the ranges of %s hold %d records but this sink sent %d: another producer wrote to it",
                    self.topic,
                    self._main.acks.span,
                    self._main.acks.count,
                )
        return ControlMessage(
            topic=topic,
            input_format=self.input_format,
            input_config=self.input_config,
            validation_rate=self.validation_rate,
            test_rate=self.test_rate,
            total_msg=total,
            description=self.description,
            unsupervised_topic=unsupervised,
            dataset_restrictions=dict(self.dataset_restrictions)
            if isinstance(self.dataset_restrictions, Mapping)
            else self.dataset_restrictions,
            incremental=online,
        )

    async def _announce(self, message: ControlMessage) -> None:
        if self._producer is None:
            await self.start()
        key = key_for_deployment(self.deployment_id)
        try:
            await self._producer.send_and_wait(self.control_topic, message.to_bytes(), key=key)
        except KafkaError as exc:
            raise SinkError(f"the control message to {self.control_topic} was not delivered: {exc}") from exc
        self.control_message = message
        log.info("announced %s to %s for deployment %d", message.topic, self.control_topic, self.deployment_id)

    async def send_control_msg(self) -> ControlMessage:
        """Flushes and sends the control message now (``close()`` then sends none unless more was sent)."""
        await self.flush()
        message = self.build_control_message()
        await self._announce(message)
        self._announced_at = self._main.sent
        return message

    async def send_online_control_msg(self) -> ControlMessage:
        """Announces the topic as an online (unbounded) data source, as upstream's online sinks do."""
        await self.flush()
        message = self.build_control_message(online=True)
        await self._announce(message)
        return message

    async def close(self) -> ControlMessage | None:
        """Flushes, sends the control message, disconnects. Returns the message (None if nothing was sent).

        A delivery failure raises ``DeliveryError`` and announces nothing.
        """
        if self._closed:
            return self.control_message
        try:
            await self.flush()
            if self._main.sent == 0:
                log.warning("sink for %s closed without samples: no control message sent", self.topic)
                return None
            if self._announced_at != self._main.sent:
                await self.send_control_msg()
            return self.control_message
        finally:
            await self._shutdown()

    async def online_close(self) -> None:
        """Flushes and disconnects without a control message (upstream's name for online sinks)."""
        try:
            await self.flush()
        finally:
            await self._shutdown()

    async def abort(self) -> None:
        """Disconnects without announcing anything (records already handed over are still sent or expire)."""
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started_at is not None:
            self.elapsed_s = time.monotonic() - self._started_at
        if self._bar is not None:
            self._bar.close()
        if self._producer is not None:
            await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            # A half-sent data set must not be announced: the trainer would train on part of it.
            await self.abort()
