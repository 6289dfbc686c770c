"""The one faust service entry: the orchestrator, the metrics service and the control logger.

Each service is a ``Service`` subclass that names its inbox topics and handles
records; ``run_service`` creates the topics, builds the faust app with one
agent over the inbox and runs its worker. Faust is tuned for the embedded
broker: topics are created up front with our partition counts (never declared
by faust), and group timeouts are short so that the first join takes seconds.

faust acks a record when the agent takes the next one (or the next batch) and
commits acked offsets periodically, so an offset is committed only after
``handle_batch`` returned: the effect is durable, or the record dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, cast

import faust
from faust import Worker
from faust.types import EventT

from shared.alive import AliveFile
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.repositories import Housekeeping
from shared.events import Envelope
from shared.events.signing import Keyring, Signs
from shared.fetching import FetchWait, set_fetch_wait
from shared.kafka import Handle, Producer, Received, deliver, ensure_topics, fetch_wait_for
from shared.kafka_security import KafkaSecurityError, check_connection, faust_credentials
from shared.process import every, setup_logging
from shared.settings import Settings, get_settings
from shared.topics import topics_for

log = logging.getLogger("kafkaml.service")


def make_faust_app(settings: Settings, name: str) -> faust.App:
    """A faust app with the id ``{topic_prefix}-{name}`` (also its consumer group)."""
    # faust keeps a folder per app even with the memory store: in the stack's home, not the cwd
    # (faust creates only the last level).
    datadir = settings.home / "faust" / f"{settings.topic_prefix}-{name}"
    datadir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return faust.App(
        f"{settings.topic_prefix}-{name}",
        broker=f"kafka://{settings.brokers.replace(',', ';kafka://')}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",  # durable state lives in PostgreSQL, never in faust tables
        datadir=str(datadir),
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
        broker_credentials=faust_credentials(settings),
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
        timestamp=round(message.timestamp * 1000) if message.timestamp else None,
    )


class Service:
    """What a faust service's agent needs, started once: settings, topics, the database and
    the producer (answers, dead letters). Subclasses name their inbox and handle records."""

    name: ClassVar[str] = "service"
    # Records per call of ``handle_batch``: above 1 the agent buffers up to this many.
    batch_max: ClassVar[int] = 1
    batch_within_s: ClassVar[float] = 0.2

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = topics_for(settings)
        self.engine = make_engine(settings.db_url)
        self.sessions = make_sessionmaker(self.engine)
        # Verifies every message the service reads (``keyring.open``); the producer signs with it.
        self.keyring = Keyring.of(settings, required=True)
        self.producer = Producer(settings, signer=self.keyring)
        self._started = asyncio.Event()
        self._starting = False
        self._housekeeping: asyncio.Task[None] | None = None

    def inbox(self) -> list[str]:
        """The topics the agent consumes."""
        raise NotImplementedError

    async def start(self) -> None:
        if self._starting:
            await self._started.wait()
            return
        self._starting = True
        await self.producer.start()
        await self.on_start()
        tidying = every(self.settings.housekeeping_every_s, self.housekeep, what=f"{self.name} housekeeping")
        self._housekeeping = asyncio.create_task(tidying)
        self._started.set()

    async def on_start(self) -> None:
        """Starts what the subclass adds (called once, after the producer)."""

    async def housekeep(self) -> None:
        """Bounded growth: forgets the ids of messages handled long ago (subclasses add theirs)."""
        async with self.sessions() as session:
            retention = timedelta(hours=self.settings.processed_retention_h)
            forgotten = await Housekeeping(session).forget_processed(self.name, retention)
            await session.commit()
        if forgotten:
            log.info("%s: forgot %d handled message ids older than %s", self.name, forgotten, retention)

    async def handle_batch(self, records: Sequence[Received]) -> None:
        """Each record through ``process`` until it succeeds or is dead-lettered."""
        await self.start()
        for received in records:
            await self.deliver(received, self.process)

    async def deliver(self, received: Received, step: Handle) -> None:
        await deliver(
            received,
            step,
            producer=self.producer,
            dead_letter_topic=self.topics.dead_letters,
            consumer=self.name,
            retry_for_s=self.settings.retry_for_s,
            on_dead_letter=self.dead_lettered,
        )

    async def dead_lettered(self, received: Received, reason: str) -> None:
        """After ``received`` went to the dead-letter topic (a service that answers commands
        ends the command it belonged to)."""

    async def process(self, received: Received) -> None:
        raise NotImplementedError

    def signer_for(self, answer: Envelope) -> Signs | None:
        """The key that signs ``answer`` (None: the service's own). A service overrides it for
        answers that only a worker's key may sign, e.g. a version switch to an inference's replicas."""
        return None

    async def publish(self, answers: Sequence[Envelope]) -> None:
        for answer in answers:
            await self.producer.publish(answer, signer=self.signer_for(answer))


# --- liveness ------------------------------------------------------------

# How often the liveness timer looks at the app (the probe's bound is several times this).
ALIVE_EVERY_S = 5.0


def consuming(app: faust.App) -> bool:
    """Whether ``app``'s consume loop can go on: neither the app, its consumer nor the fetcher
    that drives the consumer crashed or is stopping."""
    # The fetcher is the service whose task polls the consumer; faust names it privately.
    fetcher = app._fetcher
    return not (app.should_stop or app.consumer.should_stop or fetcher.crashed)


def add_liveness(app: faust.App, alive: AliveFile) -> None:
    """Touches ``alive`` from a timer while ``consuming(app)``.

    A faust agent runs only when records arrive, so touching from the agent alone
    would make an idle service look dead. The timer runs on the app's event loop:
    it fires only while that loop is responsive, and touches only while faust's
    consumer and fetcher are running. The agent touches it too, after each record.
    It does not watch a handler's progress: a handler retrying a database or a
    broker that is away keeps the file young, since a restart would not bring
    them back (the API's probe makes the same choice).
    """
    if alive.path is None:
        return

    async def touch_alive() -> None:
        if consuming(app):
            alive.touch()

    app.timer(ALIVE_EVERY_S, name="alive")(touch_alive)


# --- fetch wait ------------------------------------------------------------

# How often an idle service's fetch wait is stepped towards the idle wait.
FETCH_WAIT_EVERY_S = 0.5


def add_fetch_wait(app: faust.App, policy: FetchWait) -> Callable[[int], None]:
    """Drives the fetch wait of ``app``'s aiokafka consumer by ``policy`` (``shared.fetching``):
    faust builds that consumer with a fixed 1.5 s wait, which the embedded broker holds on every
    empty fetch, so each command waited up to that per faust hop. The agent reports the records
    it takes (the function returned); a timer backs the wait off while none come."""

    def apply(records: int) -> None:
        thread = getattr(app.consumer, "_thread", None)  # faust's consumer thread, once started
        set_fetch_wait(getattr(thread, "_consumer", None), policy.observe(records))

    async def idle_step() -> None:
        apply(0)

    app.timer(FETCH_WAIT_EVERY_S, name="fetch-wait")(idle_step)
    return apply


# --- the app ---------------------------------------------------------------


def create_app(service: Service, alive: AliveFile | None = None) -> faust.App:
    """The faust app of ``service``: one agent over its inbox, a task that starts it and the
    liveness timer (``alive``, by default from ``KAFKAML_ALIVE_FILE``; off without it)."""
    alive = alive or AliveFile.from_env()
    app = make_faust_app(service.settings, service.name)
    inbox = app.topic(*service.inbox(), value_type=bytes, key_type=bytes, allow_empty=True)
    seen = add_fetch_wait(app, fetch_wait_for(service.settings))

    async def consume(stream: faust.StreamT[bytes]) -> None:
        if service.batch_max == 1:
            async for event in stream.events():
                seen(1)
                await service.handle_batch([received_of(event)])
                alive.touch()
            return
        # take_events, not take: a batch needs each record's position and headers (to dead-letter
        # it). faust's StreamT interface omits the method its Stream class has.
        batches = cast("faust.Stream[bytes]", stream).take_events(service.batch_max, within=service.batch_within_s)
        async for events in batches:
            seen(len(events))
            await service.handle_batch([received_of(event) for event in events])
            alive.touch()

    async def start_service() -> None:
        await service.start()

    app.agent(inbox, name=f"{service.name.replace('-', '_')}_inbox")(consume)
    app.task(start_service)
    add_liveness(app, alive)
    return app


def run_service(make_service: Callable[[Settings], Service]) -> None:
    """The entry point of a faust service: create the topics, then run the app's worker."""
    settings = get_settings()
    setup_logging(settings.log_level)
    try:
        asyncio.run(check_connection(settings))
    except KafkaSecurityError as exc:  # wrong credentials: no restart cures them
        log.error("cannot start: %s", exc)
        raise SystemExit(2) from None
    asyncio.run(ensure_topics(settings))
    app = create_app(make_service(settings))
    Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()
