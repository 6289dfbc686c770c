"""One error root. Each carries what a REST client needs to see (status, field)."""

from __future__ import annotations


class KafkaMLError(Exception):
    """Root of the errors the project raises on purpose."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(KafkaMLError):
    status = 404
    title = "Not found"


class Conflict(KafkaMLError):
    status = 409
    title = "Conflict"


class Invalid(KafkaMLError):
    status = 422
    title = "Invalid request"


class Undecodable(KafkaMLError):
    """A message that no handler can read; it goes to the dead-letter topic."""

    status = 400
    title = "Undecodable message"
