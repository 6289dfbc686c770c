"""The envelope every command and event travels in.

Commands are imperative (`CreateModel`) and have one handler; events are past
tense (`ModelCreated`). A message's ``type`` selects its payload schema; the
schemas are a public contract (users may publish commands themselves) and
change only additively: a new field gets a default, ``version`` goes up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    # Unknown fields are ignored so that older consumers read newer producers.
    model_config = ConfigDict(extra="ignore")


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: ClassVar[str] = "event"  # "command" or "event"

    event_id: UUID = Field(default_factory=uuid4, description="Unique id; handlers are idempotent on it")
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: UUID | None = Field(default=None, description="The command this message answers (its event_id)")
    payload: Any

    def key(self) -> bytes:
        """Partition key: the entity the message is about, else the message itself."""
        entity = getattr(self.payload, "partition_key", None)
        value = entity() if callable(entity) else None
        return str(value if value is not None else self.correlation_id or self.event_id).encode()

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def reply(self, event: Envelope) -> Envelope:
        """Ties an outcome event to the command it answers."""
        event.correlation_id = self.correlation_id or self.event_id
        return event
