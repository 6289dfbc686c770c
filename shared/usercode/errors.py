"""Errors in a user's model code, located at the user's line, and worded for the user.

User code is compiled under its own file names, so the frames of a traceback
that belong to it can be told apart from ours and the framework's.
"""

from __future__ import annotations

from typing import Any, Literal

from shared.errors import KafkaMLError
from shared.process import truncate
from shared.scrub import scrub

__all__ = [
    "FILENAMES",
    "MAX_MESSAGE",
    "Field",
    "ModelCodeError",
    "call_user",
    "failure_message",
    "runtime_error",
    "user_location",
]

Field = Literal["code", "imports"]

# compile() filenames: they let us tell the user's frames apart in a traceback.
FILENAMES: dict[Field, str] = {"imports": "<imports>", "code": "<code>"}
_FIELDS_BY_FILENAME: dict[str, Field] = {v: k for k, v in FILENAMES.items()}

# An exception message can be arbitrarily long (a user can raise anything);
# it travels in a Kafka event and is shown to a user, so keep it readable.
MAX_MESSAGE = 2000


# Control characters a user's exception may carry (NUL among them) are shown as U+FFFD:
# the message is read by people and stored in PostgreSQL, which refuses NUL.
_CONTROL_CHARACTERS = {c: "\ufffd" for c in range(32) if chr(c) not in "\n\t"} | {127: "\ufffd"}


def readable(text: str) -> str:
    """``text`` without control characters (newlines and tabs stay) and without secrets
    (``shared.scrub``: every user-code error becomes an answer through here), at most MAX_MESSAGE long."""
    return truncate(scrub(text.translate(_CONTROL_CHARACTERS)), MAX_MESSAGE)


class ModelCodeError(KafkaMLError):
    """The user's model code is wrong; ``field`` and ``line`` say where."""

    status = 422
    title = "Invalid model code"

    def __init__(self, detail: str, *, field: Field = "code", line: int | None = None) -> None:
        super().__init__(readable(detail), field=field)
        self.field: Field = field
        self.line = line

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.detail, "field": self.field, "line": self.line}

    def __repr__(self) -> str:
        return f"ModelCodeError({self.detail!r}, field={self.field!r}, line={self.line!r})"


def user_location(exc: BaseException) -> tuple[Field | None, int | None]:
    """The deepest frame of the traceback that belongs to the user's source.

    The deepest one is the most precise: for an error inside a function the
    user defined, it is the line in that function, not the call site.
    """
    field: Field | None = None
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        found = _FIELDS_BY_FILENAME.get(tb.tb_frame.f_code.co_filename)
        if found is not None:
            field, line = found, tb.tb_lineno
        tb = tb.tb_next
    return field, line


def runtime_error(exc: BaseException, default_field: Field) -> ModelCodeError:
    """An exception raised while user code ran, as a :class:`ModelCodeError` at the user's line."""
    field, line = user_location(exc)
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if line is not None:
        message += f" (line {line})"
    return ModelCodeError(truncate(message, MAX_MESSAGE), field=field or default_field, line=line)


def call_user(func: Any, what: str) -> Any:
    """Call a method the user wrote, reporting its failure with the user's line.

    ``func`` is an attribute of a user's object: its type is whatever the user made it.
    """
    try:
        return func()
    except (Exception, SystemExit) as exc:
        error = runtime_error(exc, "code")
        error.detail = readable(f"{what} failed: {error.detail}")
        error.args = (error.detail,)
        raise error from None


def failure_message(what: str, exc: BaseException) -> str:
    """``"model.fit raised ValueError: … (line 3 of your code)"``: the user's line where there is one."""
    if isinstance(exc, ModelCodeError):
        return readable(f"{what}: {exc.detail}")
    # The same reading of the traceback as the validator's: the deepest frame of the user's source.
    field, line = user_location(exc)
    text = str(exc).strip()
    message = f"{what} raised {type(exc).__name__}" + (f": {text}" if text else "")
    if line is not None:
        message += f" (line {line} of your {field})"
    return readable(message)
