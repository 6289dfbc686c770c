"""The declarative base every table shares, and the value sets some text columns hold.

One ``Base`` means one ``MetaData``: the Alembic environment and the migrations see every
table whichever owner's module defines it. A column typed with a ``Literal`` is stored as
plain text; the type says which values its writer puts there (a CHECK constraint holds
``framework`` and both ``status`` columns to theirs), so rows convert to the event records
without casts.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.orm import DeclarativeBase

# The event schemas spell these inline; they are named here for the columns that store them.
InputFormat = Literal["RAW", "AVRO", "JSON"]
ControlFormat = Literal["RAW", "AVRO"]  # what a control message may announce
ArtifactFormat = Literal["keras", "pt"]


class Base(DeclarativeBase):
    pass
