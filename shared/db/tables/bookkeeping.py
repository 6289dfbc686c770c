"""Bookkeeping every consumer shares: handled messages and how commands ended.

Each service writes its own rows here (``processed_messages`` is keyed by consumer);
the API only reads ``command_outcomes`` to answer ``/commands/{id}``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables.base import Base, StorableJSON


class ProcessedMessage(Base):
    """One row per message a consumer handled, with what it published in answer.

    A redelivered message is recognised here and its answer published again
    (the first publish may have been lost with the process), nothing else.
    """

    __tablename__ = "processed_messages"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    published: Mapped[list[dict[str, Any]]] = mapped_column(StorableJSON, default=list)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CommandOutcome(Base):
    """How each command ended, for clients that got 202 and poll ``/commands/{id}``."""

    __tablename__ = "command_outcomes"

    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    outcome_type: Mapped[str] = mapped_column(String(100))
    event: Mapped[dict[str, Any]] = mapped_column(StorableJSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PendingCommand(Base):
    """A command waiting for another service's answer (``CreateModel`` for the validator's).

    Written by the orchestrator with the command, removed when the command's outcome is
    recorded; one still here after its deadline ends rejected (the answer was lost or never
    came), so no command reads pending for ever.
    """

    __tablename__ = "pending_commands"

    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    command_type: Mapped[str] = mapped_column(String(100))
    awaiting: Mapped[str] = mapped_column(String(100))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
