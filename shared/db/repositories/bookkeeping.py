"""The bookkeeping every consumer shares: messages handled, and how commands ended."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.repositories.base import RepositoryBase
from shared.db.tables import CommandOutcome, PendingCommand, ProcessedMessage


class ProcessedRepository:
    """``processed_messages``, read and written a batch at a time (one query each way).

    Not a ``RepositoryBase``: its key is (consumer, message id) and nothing reads one row.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def seen(self, consumer: str, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """Of ``message_ids``, those ``consumer`` already handled → what it published in answer."""
        if not message_ids:
            return {}
        rows = await self.session.execute(
            select(ProcessedMessage.message_id, ProcessedMessage.published).where(
                ProcessedMessage.consumer == consumer, ProcessedMessage.message_id.in_(message_ids)
            )
        )
        return {row.message_id: list(row.published) for row in rows}

    async def add_many(self, consumer: str, published: Mapping[uuid.UUID, list[dict[str, Any]]]) -> None:
        # A plain insert, not ON CONFLICT DO NOTHING: a concurrent consumer that handled one of
        # these ids makes the transaction fail (IntegrityError, retried), and the retry skips that id.
        if published:
            await self.session.execute(
                insert(ProcessedMessage),
                [{"consumer": consumer, "message_id": m, "published": p} for m, p in published.items()],
            )


class OutcomeRepository(RepositoryBase[CommandOutcome]):
    """How commands end: ``get(command_id)`` reads the outcome; a command waiting for another
    service's answer is pending until its outcome is recorded or its deadline passes."""

    table = CommandOutcome

    async def record(self, command_id: uuid.UUID, outcome_type: str, event: dict[str, Any]) -> None:
        """The first outcome recorded for a command stays (ON CONFLICT DO NOTHING); it is no longer pending."""
        statement = insert(CommandOutcome).values(command_id=command_id, outcome_type=outcome_type, event=event)
        await self.session.execute(statement.on_conflict_do_nothing(index_elements=["command_id"]))
        await self.session.execute(delete(PendingCommand).where(PendingCommand.command_id == command_id))

    async def expect(self, command_id: uuid.UUID, command_type: str, awaiting: str, within_s: float) -> None:
        """The command waits for ``awaiting``'s answer, at most ``within_s`` seconds from now."""
        deadline = datetime.now(UTC) + timedelta(seconds=within_s)
        statement = insert(PendingCommand).values(
            command_id=command_id, command_type=command_type, awaiting=awaiting, deadline=deadline
        )
        await self.session.execute(statement.on_conflict_do_nothing(index_elements=["command_id"]))

    async def overdue(self, limit: int = 100) -> Sequence[PendingCommand]:
        """Pending commands past their deadline, oldest first, locked for this transaction."""
        rows = await self.session.scalars(
            select(PendingCommand)
            .where(PendingCommand.deadline < func.now())
            .order_by(PendingCommand.deadline)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return rows.all()
