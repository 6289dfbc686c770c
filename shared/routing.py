"""Handlers registered by message class, and the one place a refusal becomes an answer.

A service lists what it handles: each command class has exactly one handler,
each event class any number (cosmicpython's message bus). A handler is a plain
async function ``(message, uow) -> messages to publish``; it refuses by raising
``Rejected``, which the router turns into the command's ``CommandRejected``.
Registration is checked by mypy: a handler must accept the class it is
registered for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, cast

from shared.errors import Rejected
from shared.events import Command, CommandRejected, Envelope, Event, Rejection

U = TypeVar("U")
C = TypeVar("C", bound=Command)
V = TypeVar("V", bound=Event)
M = TypeVar("M", bound=Envelope)

Handler = Callable[[M, U], Awaitable[list[Envelope]]]


def rejection_payload(refusal: Rejected, command_type: str = "") -> Rejection:
    """A refusal as a problem (status, title, detail, field, line) of ``command_type``."""
    return Rejection(
        command_type=refusal.command_type or command_type,
        status=refusal.status,
        title=refusal.title,
        detail=refusal.detail,
        field=refusal.field,
        line=refusal.line,
    )


def rejection(message: Envelope, refusal: Rejected) -> Envelope:
    """The answer to a refused command, tied to it."""
    return message.reply(CommandRejected(payload=rejection_payload(refusal, message.type)))


class Router(Generic[U]):
    """Message class → handler(s) of one service, ``U`` being its unit of work."""

    def __init__(self) -> None:
        # The per-entry relation (a handler takes exactly its class) is checked at registration.
        self._commands: dict[type[Envelope], Handler[Envelope, U]] = {}
        self._events: dict[type[Envelope], list[Handler[Envelope, U]]] = {}

    def command(self, message_class: type[C], handler: Handler[C, U]) -> None:
        if message_class in self._commands:
            raise ValueError(f"{message_class.__name__} already has a handler: a command has exactly one")
        self._commands[message_class] = cast("Handler[Envelope, U]", handler)

    def event(self, message_class: type[V], handler: Handler[V, U]) -> None:
        self._events.setdefault(message_class, []).append(cast("Handler[Envelope, U]", handler))

    def handles(self, message: Envelope) -> bool:
        return type(message) in self._commands or type(message) in self._events

    @property
    def message_classes(self) -> frozenset[type[Envelope]]:
        return frozenset(self._commands) | frozenset(self._events)

    async def __call__(self, message: Envelope, uow: U) -> list[Envelope]:
        """Runs the message's handler(s); a refusal of a command becomes its answer.

        An event's handlers run in the same transaction, in registration order: if
        one fails, none of their effects is kept, and the message is retried or
        dead-lettered as a whole (see ``shared.kafka.deliver``).
        """
        command_handler = self._commands.get(type(message))
        if command_handler is not None:
            try:
                return await command_handler(message, uow)
            except Rejected as refusal:
                return [rejection(message, refusal)]
        answers: list[Envelope] = []
        for handler in self._events.get(type(message), []):
            try:
                answers.extend(await handler(message, uow))
            except Rejected as refusal:
                if refusal.command_type is None:
                    raise  # nothing to answer: the message is dead-lettered with the reason
                answers.append(rejection(message, refusal))
        return answers
