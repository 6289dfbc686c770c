"""Shapes as JSON wants them, whatever the framework reported."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def plain_shape(shape: Iterable[Any]) -> list[int | None]:
    # Dimensions may be numpy ints or TF Dimension-like objects: JSON wants plain ints.
    return [None if d is None else int(d) for d in shape]
