"""What every sample decoder shares (:mod:`shared.codecs` chooses one per wire format).

A batch decodes to ``Decoded``: the good samples in batch order, and ``(index, reason)``
for each record that could not be decoded. Whatever one record makes a decoder raise
marks that record bad, never the batch (:func:`each_record`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import numpy as np

# More bad samples than this share of the announced ones fails a training.
MAX_BAD_FRACTION: Final = 0.10


@dataclass(frozen=True)
class Decoded:
    """The good samples of a batch, in batch order, and what was wrong with the others."""

    x: np.ndarray[Any, Any]
    y: np.ndarray[Any, Any] | None
    bad: list[tuple[int, str]] = field(default_factory=list)

    @property
    def good_indices(self) -> list[int]:
        """Indices (within the batch) of the samples in ``x``, for callers that track positions."""
        skipped = {index for index, _ in self.bad}
        return [i for i in range(len(self.x) + len(self.bad)) if i not in skipped]


def too_many_bad(bad: int, announced: int) -> bool:
    """The policy above: more than :data:`MAX_BAD_FRACTION` of the announced samples are bad."""
    return bad > MAX_BAD_FRACTION * announced


def describe_shape(shape: tuple[int, ...]) -> str:
    return str(shape) if shape else "scalar"


class Decoder(ABC):
    """Decodes batches of one stream's messages."""

    input_format: str

    @abstractmethod
    def decode(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None) -> Decoded:
        """Decodes a batch: ``keys=None`` when there are no labels (values to predict)."""

    @abstractmethod
    def describe(self) -> str:
        """What a sample is, for logs and error messages."""

    @property
    @abstractmethod
    def sample_shape(self) -> tuple[int, ...] | None:
        """The shape of one decoded sample, None until it is known (Avro: after a first record)."""


T = TypeVar("T")


def each_record(
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None] | None,
    sample: Callable[[bytes | None], T],
    label: Callable[[bytes | None], T],
) -> tuple[list[T], list[T], list[tuple[int, str]]]:
    """Decodes formats that take one record at a time (Avro, JSON): the samples, their labels
    (when there are keys), and the records that raised as ``(index, reason)``.

    Any exception counts, not only the ValueError a decoder raises on purpose: a record
    must not stop the stream with a RecursionError, a MemoryError or a library's own error.
    """
    if keys is not None and len(keys) != len(values):
        raise ValueError(f"{len(values)} values but {len(keys)} keys")
    xs: list[T] = []
    ys: list[T] = []
    bad: list[tuple[int, str]] = []
    for index, value in enumerate(values):
        try:
            x = sample(value)
            y = label(keys[index]) if keys is not None else None
        except ValueError as exc:
            bad.append((index, str(exc)))
            continue
        except Exception as exc:
            bad.append((index, f"{type(exc).__name__}: {exc}"))
            continue
        xs.append(x)
        if y is not None:
            ys.append(y)
    return xs, ys, bad


def flatten(value: Any, name: str, out: list[float]) -> None:
    # bool before int: bool is an int subclass, and we want 0/1 either way.
    if isinstance(value, bool):
        out.append(1.0 if value else 0.0)
    elif isinstance(value, (int, float)):
        out.append(float(value))
    elif isinstance(value, (list, tuple)):
        for item in value:
            flatten(item, name, out)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            flatten(item, f"{name}.{key}", out)
    elif value is None:
        raise ValueError(f"field {name!r} is null")
    else:
        raise ValueError(f"field {name!r} is a {type(value).__name__}, not a number")
