"""Handling a message exactly once in effect, for the services that own tables.

The transaction that applies a message's effect also records the message id
and the messages to publish in answer. A redelivered message (after a crash
between commit and offset commit) changes nothing and its answer is
published again, with the same event ids, so consumers downstream dedupe it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.db.uow import UnitOfWork
from shared.events import MESSAGE_ADAPTER, OUTCOME_TYPES, Envelope


async def handle_once(
    message: Envelope,
    handler: Callable[[Envelope, UnitOfWork], Awaitable[list[Envelope]]],
    *,
    uow: UnitOfWork,
    consumer: str,
) -> list[Envelope]:
    """Runs ``handler`` in one transaction unless ``consumer`` already handled ``message``;
    returns the messages to publish (after the commit)."""
    async with uow:
        stored = await uow.processed.get(consumer, message.event_id)
        if stored is not None:
            return [MESSAGE_ADAPTER.validate_python(item) for item in stored]
        outgoing = await handler(message, uow)
        dumped = [m.model_dump(mode="json") for m in outgoing]
        await uow.processed.add(consumer, message.event_id, dumped)
        for sent, record in zip(outgoing, dumped, strict=True):
            if sent.type in OUTCOME_TYPES and sent.correlation_id is not None:
                await uow.outcomes.record(sent.correlation_id, sent.type, record)
        await uow.commit()
    return outgoing
