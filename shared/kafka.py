"""The one Kafka producer helper and the one consumer loop.

Delivery rules (docs/architecture.md): an offset is committed only after the
handler's effect is durable; handlers are idempotent on the message id; a
message no handler can accept goes to the dead-letter topic with the reason
and the stream goes on; a transient failure (broker or database away) is
retried, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import (
    BrokerNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)
from aiokafka.structs import RecordMetadata

from shared.alive import AliveFile
from shared.errors import KafkaMLError, TooLarge
from shared.events import Envelope
from shared.events.signing import Keyring, Signs
from shared.fetching import AdaptiveConsumer, FetchWait
from shared.kafka_security import security_options, start_client
from shared.limits import DEAD_LETTER_HEADROOM_BYTES
from shared.process import Backoff
from shared.settings import Settings
from shared.topics import TopicSpec, topics_for

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

# Transient failures are retried after 0.2 s, doubling up to 30 s, for 10 minutes at most
# (KAFKAML_RETRY_FOR_S): then the record is dead-lettered with the reason, and the stream goes on.
RETRY = Backoff()
RETRY_FOR_S = 600.0


# --- topics ----------------------------------------------------------------


async def ensure_topics(settings: Settings, extra: Sequence[TopicSpec] = ()) -> None:
    """Creates every registry topic (and ``extra``) that does not exist yet."""
    specs = [*topics_for(settings).specs(), *extra]
    await create_topics(settings, specs)


async def create_topics(settings: Settings, specs: Sequence[TopicSpec], *, grow: bool = False) -> None:
    """Creates the topics that do not exist; with ``grow``, also adds partitions to existing
    topics that have fewer than the spec asks (never removes any)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.brokers, **security_options(settings))
    await start_client(admin.start, settings)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if grow:
            await grow_partitions(admin, [s for s in specs if s.name in existing])
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, topic_configs=s.config)
                for s in missing
            ]
        )
        for name, code, *_ in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaMLError(f"could not create topic {name!r}: Kafka error code {code}")
        log.info("created topics: %s", ", ".join(s.name for s in missing))
    finally:
        await admin.close()


async def existing_topics(settings: Settings) -> set[str]:
    """The names of the topics the broker has now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.brokers, **security_options(settings))
    await start_client(admin.start, settings)
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def grow_partitions(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> None:
    if not specs:
        return
    described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([s.name for s in specs])}
    wanted = {s.name: NewPartitions(s.partitions) for s in specs if described.get(s.name, s.partitions) < s.partitions}
    if not wanted:
        return
    try:
        await admin.create_partitions(wanted)
    except KafkaError as exc:  # the embedded broker has no CreatePartitions
        log.warning(
            "could not add partitions to %s (%s): consumers beyond the partition count will stand idle; "
            "create the topic with enough partitions up front",
            ", ".join(wanted), exc,
        )  # fmt: skip
        return
    log.info("added partitions: %s", ", ".join(f"{n} → {p.total_count}" for n, p in wanted.items()))


# --- producing -------------------------------------------------------------


def too_large(what: str, size: int, limit: int) -> str:
    return (
        f"{what} would be a {size:,}-byte message, more than a Kafka message may be here ({limit:,} bytes, "
        "KAFKAML_MESSAGE_MAX_BYTES): make the model's code (or the chain) smaller"
    )


class Producer:
    """Publishes and waits for the broker's acknowledgement: a send either lands or raises."""

    def __init__(self, settings: Settings, *, signer: Signs | None = None, **overrides: Any) -> None:
        options: dict[str, Any] = {
            "bootstrap_servers": settings.brokers,
            "acks": "all",
            "enable_idempotence": settings.enable_idempotence,
            "linger_ms": 1,
            "max_request_size": settings.message_max_bytes,
            **security_options(settings),
        }
        options.update(overrides)
        self._options = options
        self._settings = settings
        self._client: AIOKafkaProducer | None = None
        self.topics = topics_for(settings)
        self.max_message_bytes: int = options["max_request_size"]
        # Messages are signed (shared.events.signing) with the given key, else the settings' bus
        # or validator key; a worker passes its job's key to ``publish``.
        keyring = Keyring.of(settings)
        self.signer: Signs | None = signer or (keyring if keyring.can_sign else None)

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._client is None:
            raise RuntimeError("Producer.start() was not called")
        return self._client

    async def start(self) -> None:
        # aiokafka binds its client to the running loop, so it is created here, not in __init__.
        self._client = AIOKafkaProducer(**self._options)
        try:
            await start_client(self._client.start, self._settings)
        except BaseException:
            await self._client.stop()  # a client that did not start still holds its connections
            raise

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(self, message: Envelope, *, signer: Signs | None = None) -> RecordMetadata:
        """Sends a message to the topic its class names, keyed by the entity it is about, signed
        (``signer``, default the producer's); one larger than a message may be is refused
        (``TooLarge``, 413) before it is sent."""
        data = message.to_bytes()
        if len(data) > self.max_message_bytes:
            raise TooLarge(too_large(message.type, len(data), self.max_message_bytes))
        signer = signer or self.signer
        headers = [signer.header(message, data)] if signer is not None else None
        return await self.send(self.topics.of(message), data, key=message.key(), headers=headers)

    async def send(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Headers | None = None
    ) -> RecordMetadata:
        future = await self._producer.send(topic, value, key=key, headers=headers)
        return await future

    async def dead_letter(self, topic: str, received: Received, reason: str, *, consumer: str) -> None:
        """Copies ``received`` to the dead-letter topic with the reason; a value too large to send
        goes without its value (a dead letter that cannot be sent would stop the stream)."""
        size = len(received.value or b"")
        value = received.value
        if size > self.max_message_bytes - DEAD_LETTER_HEADROOM_BYTES:
            value, reason = None, f"{reason} (the value, {size} bytes, is not copied here)"
        headers = [
            *received.headers,
            ("kafkaml-dlq-reason", reason.encode()),
            ("kafkaml-dlq-consumer", consumer.encode()),
            ("kafkaml-dlq-source", f"{received.topic}:{received.partition}:{received.offset}".encode()),
        ]
        await self.send(topic, value, key=received.key, headers=headers)


# --- consuming -------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A consumed record, whichever client read it (aiokafka here, faust in the agents)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    # Milliseconds since the epoch, as the producer or broker stamped it: with the position it
    # names one record even across an embedded broker's restart (offsets start again at 0).
    timestamp: int | None = None


Handle = Callable[[Received], Awaitable[None]]
# Called after a record went to the dead-letter topic, with the reason.
OnDeadLetter = Callable[[Received, str], Awaitable[None]]


# Kafka errors that a retry cures although aiokafka does not mark them retriable: the broker
# is away or slow. Every other non-retriable one (a message too large, an invalid topic, a
# refused authorization) fails the same way every time: retrying it would stall the stream.
_TRANSIENT_KAFKA = (KafkaTimeoutError, BrokerNotAvailableError, KafkaUnavailableError, RequestTimedOutError)


def is_transient(exc: BaseException) -> bool:
    """Failures that go away by themselves: retry, never skip the message."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, _TRANSIENT_KAFKA)
    if isinstance(exc, (OSError, ConnectionError, asyncio.TimeoutError)):
        return True
    # Database connectivity, without importing SQLAlchemy into every worker.
    return type(exc).__name__ in {
        "OperationalError",
        "InterfaceError",
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "IntegrityError",  # a concurrent duplicate: the retry finds it processed
        "SerializationError",
        "DeadlockDetectedError",
    }


async def deliver(
    received: Received,
    handle: Handle,
    *,
    producer: Producer,
    dead_letter_topic: str,
    consumer: str,
    backoff: Backoff = RETRY,
    retry_for_s: float = RETRY_FOR_S,
    on_dead_letter: OnDeadLetter | None = None,
) -> None:
    """Runs ``handle`` until it succeeds, retrying transient failures for ``retry_for_s`` at most.

    A message the handler rejects, that fails for a reason that no retry will cure, or whose
    transient failure outlasts ``retry_for_s``, goes to the dead-letter topic with the reason
    (then ``on_dead_letter`` runs); either way the caller may commit its offset afterwards.
    """
    delays = backoff.delays()
    started = time.monotonic()
    tries = 0
    while True:
        tries += 1
        try:
            await handle(received)
            return
        except (KafkaMLError, ValueError, TypeError, KeyError, LookupError) as exc:
            reason = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            elapsed = time.monotonic() - started
            if not is_transient(exc):
                log.exception("%s: handler failed on %s:%s", consumer, received.topic, received.offset)
                reason = f"handler failed: {type(exc).__name__}: {exc}"
            elif elapsed >= retry_for_s:
                reason = f"still failing after {tries} tries over {elapsed:.0f} s: {type(exc).__name__}: {exc}"
            else:
                delay = min(next(delays), max(0.0, retry_for_s - elapsed))
                log.warning(
                    "%s: transient failure (%s: %s), try %d, retrying in %.1fs",
                    consumer, type(exc).__name__, exc, tries, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
        log.warning(
            "%s: dead-lettering %s:%s:%s: %s", consumer, received.topic, received.partition, received.offset, reason
        )
        await producer.dead_letter(dead_letter_topic, received, reason, consumer=consumer)
        if on_dead_letter is not None:
            await on_dead_letter(received, reason)
        return


def make_consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits and an adaptive fetch wait (``shared.fetching``): the busy
    wait (``KAFKAML_FETCH_MAX_WAIT_MS``, or a ``fetch_max_wait_ms`` override) while records
    come, backing off to ``KAFKAML_FETCH_IDLE_WAIT_MS`` when idle and to
    ``KAFKAML_FETCH_LONG_IDLE_WAIT_MS`` after a long silence."""
    busy_ms = int(overrides.pop("fetch_max_wait_ms", settings.fetch_max_wait_ms))
    options: dict[str, Any] = {
        "bootstrap_servers": settings.brokers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # Short group timeouts: the embedded broker stalls a join until a dead member times out.
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
        "rebalance_timeout_ms": 10_000,
        "max_poll_interval_ms": 300_000,
        **security_options(settings),
    }
    options.update(overrides)
    return LoginCheckedConsumer(*topics, settings=settings, fetch_wait=fetch_wait_for(settings, busy_ms), **options)


class LoginCheckedConsumer(AdaptiveConsumer):
    """A consumer whose ``start`` tells a refused login from brokers that are away (``start_client``)."""

    def __init__(self, *topics: str, settings: Settings, **options: Any) -> None:
        super().__init__(*topics, **options)
        self.login = settings

    async def start(self) -> None:
        await start_client(super().start, self.login)


def fetch_wait_for(settings: Settings, busy_ms: int | None = None) -> FetchWait:
    """The fetch-wait policy of this stack's consumers (faust's too)."""
    busy = settings.fetch_max_wait_ms if busy_ms is None else busy_ms
    idle = max(busy, settings.fetch_idle_wait_ms)
    return FetchWait(busy, idle, long_idle_ms=max(idle, settings.fetch_long_idle_wait_ms))


async def consume(
    consumer: AIOKafkaConsumer,
    handle: Handle,
    *,
    producer: Producer,
    dead_letter_topic: str,
    name: str,
    stop: asyncio.Event | None = None,
    max_records: int = 100,
    alive: AliveFile | None = None,
) -> None:
    """The one consumer loop: fetch a batch, deliver each record, then commit.

    The offset of a record is committed only after ``deliver`` returned, i.e.
    after its effect is durable or it was dead-lettered. ``alive`` is touched
    after every poll, empty or not, and after every record (Kubernetes' liveness probe).
    """
    stop = stop or asyncio.Event()
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
        if alive is not None:
            alive.touch()
        for tp, records in batches.items():
            for record in records:
                await deliver(
                    received_from(record),
                    handle,
                    producer=producer,
                    dead_letter_topic=dead_letter_topic,
                    consumer=name,
                )
                if alive is not None:
                    alive.touch()  # a slow record (a validation) is progress too
            if consumer._group_id is not None:
                await consumer.commit({TopicPartition(tp.topic, tp.partition): records[-1].offset + 1})


def received_from(record: Any) -> Received:
    return Received(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=list(record.headers or []),
        timestamp=record.timestamp,
    )


async def wait_for_assignment(consumer: AIOKafkaConsumer, timeout_s: float = 60.0) -> None:
    """A consumer is ready only once it holds partitions (a join takes seconds here)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not consumer.assignment():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("consumer got no partitions in time")
        await asyncio.sleep(0.1)


async def ping(producer: Producer, timeout_s: float = 3.0) -> None:
    """Raises unless the brokers answer a metadata request in time (for health checks)."""
    await asyncio.wait_for(producer._producer.client.fetch_all_metadata(), timeout_s)
