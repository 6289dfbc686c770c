"""Every message type, and one way to decode any of them.

>>> msg = decode(raw_bytes)          # raises Undecodable with the reason
>>> producer.publish_message(msg)    # the class knows its topic (see shared.kafka)

The families below define the message classes; importing them registers each
class (``shared.events.envelope``), and the decoding union and the outcome set
are derived from that registry. Their public names are re-exported here.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from shared.errors import Undecodable
from shared.events.catalog import *  # noqa: F403  (re-exports: the family modules define the names)
from shared.events.datasources import *  # noqa: F403
from shared.events.envelope import *  # noqa: F403
from shared.events.envelope import Envelope, registered
from shared.events.inference import *  # noqa: F403
from shared.events.training import *  # noqa: F403
from shared.events.validation import *  # noqa: F403
from shared.events.versions import *  # noqa: F403

MESSAGE_TYPES: tuple[type[Envelope], ...] = registered()

# Events that end a REST mutation: the API waits for one of these.
OUTCOME_TYPES: frozenset[str] = frozenset(cls.__name__ for cls in MESSAGE_TYPES if cls.outcome)


def _union() -> Any:
    # A discriminated union of every registered class, built at import time from the registry.
    return Annotated[Union[MESSAGE_TYPES], Field(discriminator="type")]  # noqa: UP007  (a runtime tuple)


MESSAGE_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(_union())


def decode(raw: bytes | None) -> Envelope:
    if raw is None:
        raise Undecodable("empty message (no value)")
    try:
        message: Envelope = MESSAGE_ADAPTER.validate_json(raw)
    except PydanticValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5])
        raise Undecodable(f"not a Kafka-ML message: {errors}") from exc
    return message
