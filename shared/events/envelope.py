"""The envelope every command and event travels in, and the registry of message classes.

Commands are imperative (`CreateModel`) and have one handler; events are past
tense (`ModelCreated`). A message's ``type`` selects its payload schema; the
schemas are a public contract (users may publish commands themselves) and
change only additively: a new field gets a default, ``version`` goes up.

Each message class says where it travels (``topic``) and whether it ends a REST
mutation (``outcome``); defining the class registers it, so the decoding union,
the outcome set and the routing are derived here instead of kept as lists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

# The internal topics a message can travel on (names: shared.topics.Topics).
TopicRole = Literal["commands", "events", "validation", "jobs", "artifacts"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    # Unknown fields are ignored so that older consumers read newer producers.
    model_config = ConfigDict(extra="ignore")


_REGISTRY: dict[str, type[Envelope]] = {}
E = TypeVar("E", bound="Envelope")


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: ClassVar[Literal["command", "event"]] = "event"
    topic: ClassVar[TopicRole] = "events"
    # True for the events that end a REST mutation: the API waits for one of these.
    outcome: ClassVar[bool] = False

    event_id: UUID = Field(default_factory=uuid4, description="Unique id; handlers are idempotent on it")
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: UUID | None = Field(default=None, description="The command this message answers (its event_id)")
    payload: Any

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.model_fields["type"].default
        if not isinstance(name, str):
            return  # an abstract base (Command, Event): no type of its own
        if name != cls.__name__:
            raise TypeError(f"message class {cls.__name__} declares type {name!r}: they must be equal")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise TypeError(f"two message classes are named {name}")
        _REGISTRY[name] = cls

    def key(self) -> bytes:
        """Partition key: the entity the message is about, else the message itself."""
        entity = getattr(self.payload, "partition_key", None)
        value = entity() if callable(entity) else None
        return str(value if value is not None else self.correlation_id or self.event_id).encode()

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def reply(self, event: E) -> E:
        """Ties an outcome event to the command it answers."""
        event.correlation_id = self.correlation_id or self.event_id
        return event


class Command(Envelope):
    """Asks for something; exactly one handler, which may refuse it."""

    kind: ClassVar[Literal["command", "event"]] = "command"
    topic: ClassVar[TopicRole] = "commands"


class Event(Envelope):
    """Says what happened; any number of handlers."""


def registered() -> tuple[type[Envelope], ...]:
    """Every message class defined so far, in definition order."""
    return tuple(_REGISTRY.values())
