"""The limits on one sample from outside, in one place (docs/contracts.md, "Limits").

Anyone can write to an input or data topic. A value must not be able to stop a
stream: exhaust the decoder's stack (deep JSON), its memory (a huge value) or
its arithmetic (a shape whose product wraps). Each limit is checked before any
work, and a value beyond one is refused with a reason that names the limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

__all__ = [
    "DEAD_LETTER_HEADROOM_BYTES",
    "MAX_BINARY_VALUE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUE_BYTES",
    "MAX_SHAPE_ELEMENTS",
    "MAX_SHAPE_RANK",
    "check_json",
    "check_shape",
    "check_size",
]

_MIB: Final = 1024 * 1024

MAX_JSON_VALUE_BYTES: Final = 1 * _MIB
"""The largest JSON value to predict. A JSON sample is a few numbers to a few thousand
(an image of 224x224x3 as text is well under this); decoding text into Python objects
costs tens of times its size in memory, so a larger value is refused before parsing."""

MAX_SHAPE_RANK: Final = 32
"""The most dimensions one sample may have. numpy arrays have at most 64, and a batch adds
one: a deeper sample would fail the whole batch when it is stacked."""

MAX_JSON_DEPTH: Final = MAX_SHAPE_RANK
"""The deepest nesting of lists and objects in a JSON value: a sample's rank at most. The
JSON decoder recurses once per level and runs out of stack in the thousands, so deeper
values are refused by an iterative scan before parsing."""

MAX_BINARY_VALUE_BYTES: Final = 16 * _MIB
"""The largest RAW or Avro value (sample or label) users' data sources may send; a larger
value is a mistake or an attack, and decoding it a memory risk."""

MAX_SHAPE_ELEMENTS: Final = 2**31
"""The most elements a ``data_reshape`` or ``label_reshape`` may describe. Shapes multiply
in Python integers (numpy's int64 products wrap silently); beyond this a sample could
not be sent anyway."""

DEAD_LETTER_HEADROOM_BYTES: Final = 64 * 1024
"""A dead letter copies the refused value only while it fits a message with this much to
spare for the key and headers; a larger one is dead-lettered without its value (the reason
gives its size), since a dead letter that cannot be sent stops the stream."""


def _describe_bytes(size: int) -> str:
    return f"{size / _MIB:.1f} MiB" if size >= _MIB else f"{size} bytes"


def check_size(raw: bytes, limit: int, what: str) -> None:
    """Raises ValueError when ``raw`` is over ``limit`` bytes."""
    if len(raw) > limit:
        raise ValueError(f"{what} of {_describe_bytes(len(raw))} is over the limit of {_describe_bytes(limit)}")


# The next character that matters to nesting, and the rest of a string after its opening quote.
_JSON_SIGNIFICANT: Final = re.compile(rb'["\[\]{}]')
_JSON_STRING_REST: Final = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_depth_over(raw: bytes, limit: int) -> bool:
    """Whether lists and objects in ``raw`` nest deeper than ``limit``, found in one pass without recursion.

    Brackets inside strings do not count. The scan stops at an unterminated string: the
    parser fails there too, never deeper than the scan went.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than the brackets it opens (and no scan at all)
    depth = 0
    position = 0
    while (found := _JSON_SIGNIFICANT.search(raw, position)) is not None:
        char = found.group()
        if char == b'"':
            rest = _JSON_STRING_REST.match(raw, found.end())
            if rest is None:
                return False
            position = rest.end()
            continue
        depth += 1 if char in (b"[", b"{") else -1
        if depth > limit:
            return True
        position = found.end()
    return False


def check_json(raw: bytes, what: str) -> None:
    """Raises ValueError when a JSON value is over :data:`MAX_JSON_VALUE_BYTES` or
    nests deeper than :data:`MAX_JSON_DEPTH`; checked before it is parsed."""
    check_size(raw, MAX_JSON_VALUE_BYTES, what)
    if json_depth_over(raw, MAX_JSON_DEPTH):
        raise ValueError(f"{what} nests lists or objects deeper than the limit of {MAX_JSON_DEPTH} levels")


def check_shape(dims: Sequence[int], text: object) -> None:
    """Raises ValueError when a shape has a dimension below 1, more than :data:`MAX_SHAPE_RANK`
    dimensions or more than :data:`MAX_SHAPE_ELEMENTS` elements."""
    if any(d <= 0 for d in dims):
        raise ValueError(f"shape {text!r} has a dimension below 1")
    if len(dims) > MAX_SHAPE_RANK:
        raise ValueError(f"shape {text!r} has {len(dims)} dimensions, over the limit of {MAX_SHAPE_RANK}")
    elements = math.prod(dims)  # Python integers: no wrapping
    if elements > MAX_SHAPE_ELEMENTS:
        raise ValueError(f"shape {text!r} has {elements} elements, over the limit of {MAX_SHAPE_ELEMENTS}")
