"""Handling messages exactly once in effect, for the services that own tables.

The transaction that applies messages' effects also records their ids and
the messages to publish in answer. A redelivered message (after a crash
between commit and offset commit) changes nothing and its answer is published
again, with the same event ids, so consumers downstream dedupe it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar

from shared.db.repositories import OutcomeRepository
from shared.events import MESSAGE_ADAPTER, Envelope


class BatchProcessed(Protocol):
    async def seen(self, consumer: str, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]: ...
    async def add_many(self, consumer: str, published: Mapping[uuid.UUID, list[dict[str, Any]]]) -> None: ...


class BatchUnitOfWork(Protocol):
    # Read-only properties, so that a unit of work holding concrete repositories matches.
    @property
    def processed(self) -> BatchProcessed: ...
    @property
    def outcomes(self) -> OutcomeRepository: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def commit(self) -> None: ...


U = TypeVar("U", bound=BatchUnitOfWork)


@dataclass
class BatchOutcome:
    outgoing: list[Envelope] = field(default_factory=list)  # to publish after the commit
    applied: int = 0
    skipped: int = 0  # already processed (redelivered), or repeated within the batch


async def handle_batch_once(
    messages: Sequence[Envelope],
    handler: Callable[[Envelope, U], Awaitable[list[Envelope]]],
    *,
    uow: U,
    consumer: str,
) -> BatchOutcome:
    """Runs ``handler`` on each message ``consumer`` has not handled yet, all in one transaction."""
    outcome = BatchOutcome()
    async with uow:
        answered = await uow.processed.seen(consumer, list(dict.fromkeys(m.event_id for m in messages)))
        new: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for message in messages:
            stored = answered.get(message.event_id)
            if stored is not None:
                outcome.outgoing.extend(MESSAGE_ADAPTER.validate_python(item) for item in stored)
                outcome.skipped += 1
                continue
            answers = await handler(message, uow)
            dumped = [a.model_dump(mode="json") for a in answers]
            answered[message.event_id] = new[message.event_id] = dumped
            for sent, record in zip(answers, dumped, strict=True):
                if sent.outcome and sent.correlation_id is not None:
                    await uow.outcomes.record(sent.correlation_id, sent.type, record)
            outcome.outgoing.extend(answers)
            outcome.applied += 1
        await uow.processed.add_many(consumer, new)
        await uow.commit()
    return outcome


async def handle_once(
    message: Envelope,
    handler: Callable[[Envelope, U], Awaitable[list[Envelope]]],
    *,
    uow: U,
    consumer: str,
) -> list[Envelope]:
    """One message in its own transaction; returns the messages to publish after the commit."""
    return (await handle_batch_once([message], handler, uow=uow, consumer=consumer)).outgoing
