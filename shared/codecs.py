"""Batch decoding of samples in upstream Kafka-ML's wire formats (RAW, AVRO, JSON: docs/contracts.md).

One decoder serves the trainer (values and keys: samples and labels) and the
inferencer (values only, ``keys=None``)::

    decoder = decoder_for("RAW", {"data_type": "uint8", "data_reshape": "8 8", "label_type": "uint8"})
    decoded = decoder.decode(values, keys)   # Decoded(x, y, bad)

A batch is decoded at once (RAW: one buffer viewed with ``np.frombuffer``, no
per-sample Python work). A sample that cannot be decoded is *skipped and
counted*, never fatal to the batch: ``Decoded.bad`` lists ``(index within the
batch, reason)``, and the caller decides what the count means (the trainer
fails beyond :data:`MAX_BAD_FRACTION`, :func:`too_many_bad`). Whatever one
record makes a decoder raise marks that record bad, and values beyond the
limits of :mod:`shared.limits` are refused before any decoding.
"""

from __future__ import annotations

import io
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import numpy as np
from fastavro import parse_schema, schemaless_reader

from shared.control import AvroConfig, JsonConfig, RawConfig
from shared.limits import MAX_BINARY_VALUE_BYTES, check_json, check_size

__all__ = [
    "MAX_BAD_FRACTION",
    "AvroDecoder",
    "Decoded",
    "Decoder",
    "JsonDecoder",
    "RawDecoder",
    "decoder_for",
    "too_many_bad",
]

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


def _describe_shape(shape: tuple[int, ...]) -> str:
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


# --- RAW ----------------------------------------------------------------------


class RawDecoder(Decoder):
    """A value is one sample's bytes in C order, a key the label's bytes."""

    input_format = "RAW"

    def __init__(self, config: RawConfig) -> None:
        self.config = config
        self.dtype = config.data_dtype
        self.shape = config.data_shape
        # Python integers: the shape's product cannot wrap (shared.limits bounds it).
        self.size = math.prod(self.shape) * self.dtype.itemsize
        self.label_dtype = config.label_dtype
        self.label_shape = config.label_shape
        self.label_size = math.prod(self.label_shape) * self.label_dtype.itemsize

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape

    def describe(self) -> str:
        return f"{self.dtype.name} {_describe_shape(self.shape)}"

    def describe_label(self) -> str:
        return f"{self.label_dtype.name} {_describe_shape(self.label_shape)}"

    def _check_value(self, value: bytes | None) -> str | None:
        if value is None:
            return "no value"
        if len(value) > MAX_BINARY_VALUE_BYTES:
            return f"value of {len(value)} bytes is over the limit of {MAX_BINARY_VALUE_BYTES} bytes"
        if len(value) != self.size:
            return f"{len(value)} bytes, expected {self.size} for {self.describe()}"
        return None

    def _check_key(self, key: bytes | None) -> str | None:
        if key is None:
            return "no label (the record has no key)"
        if len(key) > MAX_BINARY_VALUE_BYTES:
            return f"label of {len(key)} bytes is over the limit of {MAX_BINARY_VALUE_BYTES} bytes"
        if len(key) != self.label_size:
            return f"label of {len(key)} bytes, expected {self.label_size} for {self.describe_label()}"
        return None

    def decode(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None) -> Decoded:
        if keys is not None and len(keys) != len(values):
            raise ValueError(f"{len(values)} values but {len(keys)} keys")
        good_values: list[bytes] = []
        good_keys: list[bytes] = []
        bad: list[tuple[int, str]] = []
        for index, value in enumerate(values):
            reason = self._check_value(value)
            key = keys[index] if keys is not None else None
            if reason is None and keys is not None:
                reason = self._check_key(key)
            if reason is not None:
                bad.append((index, reason))
                continue
            # The checks answered "no value" / "no label" for None: both are bytes here, and
            # ``or b""`` only tells the type checker so (an empty value is b"" either way).
            good_values.append(value or b"")
            if keys is not None:
                good_keys.append(key or b"")
        count = len(good_values)
        x = np.frombuffer(b"".join(good_values), dtype=self.dtype).reshape(count, *self.shape)
        y = None
        if keys is not None:
            y = np.frombuffer(b"".join(good_keys), dtype=self.label_dtype).reshape(count, *self.label_shape)
        return Decoded(x=x, y=y, bad=bad)


# --- AVRO ---------------------------------------------------------------------

_INTEGRAL: Final = frozenset({"boolean", "int", "long"})


def _is_integral(schema: Any) -> bool:
    """Whether every number a schema can hold is integral (booleans count as 0/1)."""
    if isinstance(schema, str):
        return schema in _INTEGRAL
    if isinstance(schema, list):  # a union: null is allowed (a null value is a bad sample)
        return all(_is_integral(member) for member in schema if member != "null")
    if isinstance(schema, Mapping):
        kind = schema.get("type")
        if kind == "array":
            return _is_integral(schema.get("items"))
        if kind == "record":
            return all(_is_integral(f["type"]) for f in schema.get("fields", []))
        if kind == "enum":
            return True
        return _is_integral(kind)
    return False


def _is_scalar(schema: Any) -> bool:
    if isinstance(schema, str):
        return schema in _INTEGRAL or schema in {"float", "double"}
    if isinstance(schema, list):
        return all(_is_scalar(member) for member in schema if member != "null")
    if isinstance(schema, Mapping):
        return schema.get("type") not in {"array", "record", "map"} and _is_scalar(schema.get("type"))
    return False


def _flatten(value: Any, name: str, out: list[float]) -> None:
    # bool before int: bool is an int subclass, and we want 0/1 either way.
    if isinstance(value, bool):
        out.append(1.0 if value else 0.0)
    elif isinstance(value, (int, float)):
        out.append(float(value))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _flatten(item, name, out)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{name}.{key}", out)
    elif value is None:
        raise ValueError(f"field {name!r} is null")
    else:
        raise ValueError(f"field {name!r} is a {type(value).__name__}, not a number")


class AvroDecoder(Decoder):
    """A value is the schemaless Avro binary of the data record, a key that of the label record.

    A data record becomes a float32 vector of its fields in schema order (arrays
    and nested records flattened); a label record becomes its fields (booleans
    as 0/1) as int64 when every field is boolean or integral, float32
    otherwise, and a scalar when the record has a single scalar field.
    """

    input_format = "AVRO"

    def __init__(self, config: AvroConfig) -> None:
        self.config = config
        data_schema = config.schema_of("data")
        if data_schema is None:  # AvroConfig requires it; kept for type checkers
            raise ValueError("an AVRO input_config needs a data_scheme")
        self._data_schema = parse_schema(data_schema)
        self._record_name = str(data_schema.get("name", "record"))
        self._data_fields = [f["name"] for f in data_schema.get("fields", [])]
        label_schema = config.schema_of("label")
        self._label_schema = parse_schema(label_schema) if label_schema is not None else None
        self._label_fields: list[str] = [f["name"] for f in (label_schema or {}).get("fields", [])]
        self.label_dtype = np.dtype(np.int64) if _is_integral(label_schema) else np.dtype(np.float32)
        label_field_types = [f["type"] for f in (label_schema or {}).get("fields", [])]
        self._scalar_label = len(label_field_types) == 1 and _is_scalar(label_field_types[0])
        self._width: int | None = None
        self._label_width: int | None = None

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        return None if self._width is None else (self._width,)

    def describe(self) -> str:
        width = "" if self._width is None else f" of {self._width} values"
        return f"Avro record {self._record_name!r}{width}"

    @staticmethod
    def _read(raw: bytes, schema: Any, what: str) -> Any:
        check_size(raw, MAX_BINARY_VALUE_BYTES, what)
        stream = io.BytesIO(raw)
        try:
            record = schemaless_reader(stream, schema, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, UnicodeDecodeError...
            raise ValueError(f"{what} is not Avro of the announced schema ({type(exc).__name__}: {exc})") from None
        left = len(raw) - stream.tell()
        if left:
            raise ValueError(f"{what} has {left} bytes left over after the record: not the announced schema")
        return record

    def _vector(self, record: Any, fields: list[str], what: str) -> list[float]:
        out: list[float] = []
        if isinstance(record, Mapping):
            for name in fields or list(record):
                _flatten(record.get(name), name, out)
        else:  # a non-record schema: the value itself
            _flatten(record, what, out)
        return out

    def _data(self, raw: bytes | None) -> list[float]:
        if raw is None:
            raise ValueError("no value")
        vector = self._vector(self._read(raw, self._data_schema, "value"), self._data_fields, "value")
        if self._width is None:
            self._width = len(vector)
        elif len(vector) != self._width:
            raise ValueError(f"the data record has {len(vector)} values, the first one had {self._width}")
        return vector

    def _label(self, raw: bytes | None) -> list[float]:
        if self._label_schema is None:
            raise ValueError("a label arrived but the input_config has no label_scheme")
        if raw is None:
            raise ValueError("no label (the record has no key)")
        vector = self._vector(self._read(raw, self._label_schema, "label"), self._label_fields, "label")
        if self._label_width is None:
            self._label_width = len(vector)
        elif len(vector) != self._label_width:
            raise ValueError(f"the label record has {len(vector)} values, the first one had {self._label_width}")
        try:  # here, per record: a value out of range would fail the batch's conversion
            np.asarray(vector, dtype=self.label_dtype)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"the label does not fit {self.label_dtype.name} ({exc})") from None
        return vector

    def decode(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None) -> Decoded:
        xs, ys, bad = each_record(values, keys, self._data, self._label)
        width = self._width or 0
        x_array = np.asarray(xs, dtype=np.float32).reshape(len(xs), width)
        y_array: np.ndarray[Any, Any] | None = None
        if keys is not None:
            labels = np.asarray(ys, dtype=self.label_dtype).reshape(len(ys), self._label_width or 0)
            y_array = labels.reshape(len(ys)) if self._scalar_label else labels
        return Decoded(x=x_array, y=y_array, bad=bad)


# --- JSON ---------------------------------------------------------------------


def _json_array(raw: bytes | None, what: str) -> np.ndarray[Any, Any]:
    """One JSON sample as a float64 array of its own shape (see the module docstring for the forms)."""
    if raw is None:
        raise ValueError(f"no {what}")
    check_json(raw, what)  # before parsing: the parser recurses per level and holds it all
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{what} is not UTF-8 JSON ({type(exc).__name__}: {exc})") from None
    if isinstance(document, Mapping):
        if "values" in document:
            document = document["values"]
        else:
            # An object: its numeric fields in document order (JSON objects keep their order).
            flat: list[float] = []
            _flatten(document, what, flat)
            return np.asarray(flat, dtype=np.float64)
    if isinstance(document, bool) or not isinstance(document, (int, float, list)):
        raise ValueError(f"{what} is a JSON {type(document).__name__}, not numbers")
    try:
        # float64 first: a ragged list or a string inside fails here, not later in a cast.
        array = np.asarray(document, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{what} is not a rectangular list of numbers ({exc})") from None
    return array


class JsonDecoder(Decoder):
    """Values to predict (not a training format upstream): UTF-8 JSON.

    A list of numbers (nested lists allowed, they must be rectangular),
    ``{"values": [...]}``, or any other object whose numeric fields, in
    document order, form the vector (nested lists and objects flattened,
    booleans as 0/1). ``input_config`` is optional: ``data_reshape`` (one
    sample's shape: the values are reshaped to it) and ``data_type`` (a numpy
    name, default float32). Without a shape, the first good sample's shape is
    the stream's. A key, if given, is a label in the same JSON forms.
    """

    input_format = "JSON"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        checked = JsonConfig.model_validate(self.config)
        self.dtype = checked.data_dtype
        # An explicit shape is fixed; otherwise the first good sample sets it.
        self._shape: tuple[int, ...] | None = checked.data_shape
        self._fixed = self._shape is not None
        self._label_shape: tuple[int, ...] | None = None

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        return self._shape

    def describe(self) -> str:
        shape = "shape not known yet" if self._shape is None else _describe_shape(self._shape)
        return f"JSON numbers as {self.dtype.name} {shape}"

    def _sample(self, raw: bytes | None) -> np.ndarray[Any, Any]:
        array = _json_array(raw, "value")
        if self._shape is None:
            self._shape = array.shape
            return array
        if self._fixed:
            expected = math.prod(self._shape)
            if array.size != expected:
                raise ValueError(f"{array.size} numbers, expected {expected} for {self.describe()}")
            return array.reshape(self._shape)
        if array.shape != self._shape:
            first = _describe_shape(self._shape)
            raise ValueError(f"shape {_describe_shape(array.shape)}, the first sample had {first}")
        return array

    def _label(self, raw: bytes | None) -> np.ndarray[Any, Any]:
        if raw is None:
            raise ValueError("no label (the record has no key)")
        array = _json_array(raw, "label")
        if self._label_shape is None:
            self._label_shape = array.shape
        elif array.shape != self._label_shape:
            raise ValueError(f"label of shape {_describe_shape(array.shape)}, the first had {self._label_shape}")
        return array

    def decode(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None) -> Decoded:
        xs, ys, bad = each_record(values, keys, self._sample, self._label)
        shape = self._shape or ()
        x_array = np.stack(xs).astype(self.dtype, copy=False) if xs else np.zeros((0, *shape), dtype=self.dtype)
        y_array: np.ndarray[Any, Any] | None = None
        if keys is not None:
            labels = np.stack(ys) if ys else np.zeros((0, *(self._label_shape or ())))
            integral = labels.size == 0 or bool(np.all(np.mod(labels, 1) == 0))
            y_array = labels.astype(np.int64 if integral else np.float32)
        return Decoded(x=x_array, y=y_array, bad=bad)


# --- choosing -----------------------------------------------------------------


def decoder_for(input_format: str, input_config: Mapping[str, Any]) -> Decoder:
    """The decoder for a stream's announced format; ValueError naming what is wrong."""
    kind = input_format.upper()
    if kind == "RAW":
        return RawDecoder(RawConfig.model_validate(dict(input_config)))
    if kind == "AVRO":
        return AvroDecoder(AvroConfig.model_validate(dict(input_config)))
    if kind == "JSON":
        return JsonDecoder(input_config)
    raise ValueError(f"unknown input format {input_format!r} (RAW, AVRO or JSON)")
