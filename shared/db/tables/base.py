"""The declarative base every table shares, and the value sets some text columns hold.

One ``Base`` means one ``MetaData``: the Alembic environment and the migrations see every
table whichever owner's module defines it. A column typed with a ``Literal`` is stored as
plain text; the type says which values its writer puts there (a CHECK constraint holds
``framework`` and both ``status`` columns to theirs), so rows convert to the event records
without casts.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from sqlalchemy import String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# The event schemas spell these inline; they are named here for the columns that store them.
InputFormat = Literal["RAW", "AVRO", "JSON", "TELEGRAF_STR_JSON"]
ControlFormat = InputFormat  # what a control message may announce: every format (issue 12)
ArtifactFormat = Literal["keras", "pt"]


class Base(DeclarativeBase):
    pass


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL (which text and jsonb refuse) and lone surrogates
    (which UTF-8 cannot encode) become U+FFFD. User code controls many strings we store
    (error messages, model names): one odd character must not lose the row."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


def storable_json(value: Any) -> Any:
    """A JSON value with every string in it (keys too) made :func:`storable`."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value


class StorableText(TypeDecorator[str]):
    """``text`` that stores any Python string (see :func:`storable`)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)


class StorableString(TypeDecorator[str]):
    """``varchar(n)`` that stores any Python string (see :func:`storable`)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)


class StorableJSON(TypeDecorator[Any]):
    """``jsonb`` that stores any JSON value, whatever its strings hold (see :func:`storable`)."""

    impl = JSONB
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return storable_json(value)
