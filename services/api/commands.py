"""Sending a command and waiting for its outcome event.

One consumer per API process reads the events topic from its end (no
consumer group: every API replica sees every outcome) and resolves the
waiting requests by correlation id. Commands go out signed with the bus key
(``Producer``); an outcome resolves a request only if its signature verifies,
since a worker can read a command's id on the topic and forge its answer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiokafka import AIOKafkaConsumer

from shared.errors import Undecodable
from shared.events import Envelope
from shared.events.signing import Forged, Keyring
from shared.fetching import AdaptiveConsumer
from shared.kafka import Producer, make_consumer, wait_for_assignment
from shared.settings import Settings
from shared.topics import topics_for

log = logging.getLogger("kafkaml.api.commands")


class CommandBus:
    def __init__(self, settings: Settings, producer: Producer) -> None:
        self.settings = settings
        self.topics = topics_for(settings)
        self.producer = producer
        self.keyring = Keyring.of(settings, required=True)
        self._waiting: dict[uuid.UUID, asyncio.Future[Envelope]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # An adaptive fetch wait (shared.fetching): quiet when idle, short once a command is sent.
        self._consumer = make_consumer(self.settings, self.topics.events, group_id=None, auto_offset_reset="latest")
        await self._consumer.start()
        self._task = asyncio.create_task(self._listen(), name="outcome-listener")
        await wait_for_assignment(self._consumer)
        # Resolve positions now, so no outcome published after start-up is missed.
        for partition in self._consumer.assignment():
            await self._consumer.position(partition)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()

    async def send(self, command: Envelope, timeout_s: float | None = None) -> Envelope | None:
        """Publishes ``command``; returns its outcome event, or None if none came in time."""
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._waiting[command.event_id] = future
        try:
            await self.producer.publish(command)
            if isinstance(self._consumer, AdaptiveConsumer):
                self._consumer.fetch_wait.wake()  # its outcome comes soon: fetch with the short wait
            return await asyncio.wait_for(future, timeout_s or self.settings.command_timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(command.event_id, None)

    async def _listen(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
            for records in batches.values():
                for record in records:
                    self._resolve(record.value, list(record.headers or []))

    def _resolve(self, raw: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        try:
            event = self.keyring.open(raw, headers, lambda e: e.outcome and e.correlation_id is not None)
        except Undecodable:
            return  # not ours to judge: the owning consumers dead-letter it
        except Forged as exc:
            log.warning("ignoring an outcome that does not verify: %s", exc.detail)
            return
        if event is None or event.correlation_id is None:
            return
        future = self._waiting.get(event.correlation_id)
        if future is not None and not future.done():
            future.set_result(event)
