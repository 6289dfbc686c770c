"""One error root. Each error carries what a REST client needs to see (status, field)."""

from __future__ import annotations

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    422: "Invalid request",
    500: "Internal error",
    503: "Unavailable",
    504: "No answer in time",
}


class KafkaMLError(Exception):
    """Root of the errors the project raises on purpose."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class Rejected(KafkaMLError):
    """A handler refuses a message and changes nothing.

    Raised by a command's handler (or an event handler answering a command, with
    ``command_type``), it becomes that command's ``CommandRejected`` answer in one
    place, the router. Raise it before writing anything.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        line: int | None = None,
        command_type: str | None = None,
    ) -> None:
        super().__init__(detail, field=field)
        self.status = status
        self.title = TITLES.get(self.status, "Rejected")
        self.line = line
        self.command_type = command_type


class NotFound(Rejected):
    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(404, detail, field=field)


class Conflict(Rejected):
    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(409, detail, field=field)


class TooLarge(Rejected):
    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(413, detail, field=field)


class Invalid(Rejected):
    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(422, detail, field=field)


class WorkloadFailed(KafkaMLError):
    """A training job or an inference cannot go on; ``detail`` says why, in words a user acts on."""

    title = "Workload failed"


class SpecNotFound(KafkaMLError):
    """No job spec with this job id arrived: there is no result or inference to report about."""

    title = "Job spec not found"


class Undecodable(KafkaMLError):
    """A message that no handler can read; it goes to the dead-letter topic."""

    status = 400
    title = "Undecodable message"
