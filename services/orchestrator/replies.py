"""Answers a handler gives when it refuses a command."""

from __future__ import annotations

from shared.events import CommandRejected, Envelope, Rejection


def reject(
    message: Envelope, command_type: str, status: int, detail: str, *, field: str | None = None, line: int | None = None
) -> list[Envelope]:
    titles = {404: "Not found", 409: "Conflict", 422: "Invalid request"}
    rejection = Rejection(
        command_type=command_type, status=status, title=titles[status], detail=detail, field=field, line=line
    )
    return [message.reply(CommandRejected(payload=rejection))]
