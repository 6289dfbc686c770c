"""Batch decoding of samples in upstream Kafka-ML's wire formats (RAW, AVRO, JSON, TELEGRAF_STR_JSON:
docs/contracts.md; the JSON pair lives in :mod:`shared.json_codecs`, the shared parts in :mod:`shared.decoding`).

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
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
from fastavro import parse_schema, schemaless_reader

from shared.control import AvroConfig, JsonConfig, RawConfig
from shared.decoding import (
    MAX_BAD_FRACTION,
    Decoded,
    Decoder,
    describe_shape,
    each_record,
    flatten,
    too_many_bad,
)
from shared.json_codecs import JsonDecoder, TelegrafJsonDecoder
from shared.limits import MAX_BINARY_VALUE_BYTES, check_size

__all__ = [
    "MAX_BAD_FRACTION",
    "AvroDecoder",
    "Decoded",
    "Decoder",
    "JsonDecoder",
    "RawDecoder",
    "TelegrafJsonDecoder",
    "decoder_for",
    "each_record",
    "too_many_bad",
]


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
        return f"{self.dtype.name} {describe_shape(self.shape)}"

    def describe_label(self) -> str:
        return f"{self.label_dtype.name} {describe_shape(self.label_shape)}"

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
                flatten(record.get(name), name, out)
        else:  # a non-record schema: the value itself
            flatten(record, what, out)
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


# --- choosing -----------------------------------------------------------------


def decoder_for(input_format: str, input_config: Mapping[str, Any]) -> Decoder:
    """The decoder for a stream's announced format; ValueError naming what is wrong."""
    kind = input_format.upper()
    if kind == "RAW":
        return RawDecoder(RawConfig.model_validate(dict(input_config)))
    if kind == "AVRO":
        return AvroDecoder(AvroConfig.model_validate(dict(input_config)))
    if kind == "JSON":
        return JsonDecoder(JsonConfig.model_validate(dict(input_config)))
    if kind == "TELEGRAF_STR_JSON":
        return TelegrafJsonDecoder(JsonConfig.model_validate(dict(input_config)))
    raise ValueError(f"unknown input format {input_format!r} (RAW, AVRO, JSON or TELEGRAF_STR_JSON)")
