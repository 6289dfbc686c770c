"""JSON and TELEGRAF_STR_JSON samples, decoded as upstream Kafka-ML decodes them (docs/contracts.md).

Upstream's decoders: JSON is ``json.loads(value)``; TELEGRAF_STR_JSON is
``json.loads(json.loads(value)["fields"]["value"])``, a Telegraf JSON metric whose
string field ``value`` carries the JSON payload (Telegraf's ``value`` parser with
``data_type = "string"``). The decoded document is then a sample as our JSON
values always were: a (nested, rectangular) list of numbers, ``{"values": [...]}``,
or an object whose numeric fields, in document order, form the vector.

For training (upstream names no fields: these are ours), the label is the
record's key, itself JSON, unless ``input_config.label_field`` names the field of
the document that holds it; ``data_field`` names the field that holds the sample
(default: the document less the label field).

A batch is parsed record by record (``json.loads`` is C; the limits of
:mod:`shared.limits` are checked first), then made one array by one
``np.asarray`` when every document is a plain list; otherwise, or when that fails,
each record is decoded alone so that a bad one is skipped with its reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.control import JsonConfig
from shared.decoding import Decoded, Decoder, describe_shape, each_record, flatten
from shared.limits import check_json

__all__ = ["JsonDecoder", "TelegrafJsonDecoder", "parse_json", "telegraf_payload"]


def parse_json(raw: bytes | str | None, what: str) -> Any:
    """``json.loads`` within the limits; ValueError saying what is wrong."""
    if raw is None:
        raise ValueError(f"no {what}")
    encoded = raw.encode() if isinstance(raw, str) else raw
    check_json(encoded, what)  # before parsing: the parser recurses per level and holds it all
    try:
        return json.loads(encoded)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{what} is not UTF-8 JSON ({type(exc).__name__}: {exc})") from None


def telegraf_payload(raw: bytes | None, what: str) -> Any:
    """The JSON document inside a Telegraf metric's string field ``fields.value``."""
    metric = parse_json(raw, what)
    fields = metric.get("fields") if isinstance(metric, Mapping) else None
    if not isinstance(fields, Mapping) or "value" not in fields:
        raise ValueError(f"{what} is not a Telegraf JSON metric with a field 'value' (fields.value)")
    inner = fields["value"]
    if not isinstance(inner, str):
        raise ValueError(f"{what}'s fields.value is a JSON {type(inner).__name__}, not a string holding JSON")
    return parse_json(inner, f"{what}'s fields.value")


def _kind(document: Any) -> str:
    return "object" if isinstance(document, Mapping) else type(document).__name__


def numbers(document: Any, what: str) -> np.ndarray[Any, Any]:
    """One decoded sample as a float64 array of its own shape (the forms in the module docstring)."""
    if isinstance(document, Mapping):
        if "values" in document:
            document = document["values"]
        else:
            flat: list[float] = []
            flatten(document, what, flat)
            return np.asarray(flat, dtype=np.float64)
    if isinstance(document, bool) or not isinstance(document, (int, float, list)):
        raise ValueError(f"{what} is a JSON {_kind(document)}, not numbers")
    try:
        # float64 first: a ragged list or a string inside fails here, not later in a cast.
        return np.asarray(document, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{what} is not a rectangular list of numbers ({exc})") from None


def _label_type(labels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    integral = labels.size == 0 or bool(np.all(np.mod(labels, 1) == 0))
    return labels.astype(np.int64 if integral else np.float32)


class JsonDecoder(Decoder):
    """JSON values (upstream's ``json.loads``); see the module docstring for the forms and labels.

    ``input_config`` is optional: ``data_reshape`` (one sample's shape: the values are
    reshaped to it) and ``data_type`` (a numpy name, default float32); without a shape,
    the first good sample's shape is the stream's. Labels are int64 when every one is
    a whole number, float32 otherwise.
    """

    input_format = "JSON"

    def __init__(self, config: JsonConfig) -> None:
        self.config = config
        self.dtype = config.data_dtype
        # An explicit shape is fixed; otherwise the first good sample sets it.
        self._shape: tuple[int, ...] | None = config.data_shape
        self._fixed = self._shape is not None
        self._label_shape: tuple[int, ...] | None = None

    def document(self, raw: bytes | None) -> Any:
        """A value as upstream's decoder turns it into a document."""
        return parse_json(raw, "value")

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        return self._shape

    def describe(self) -> str:
        shape = "shape not known yet" if self._shape is None else describe_shape(self._shape)
        return f"{self.input_format} numbers as {self.dtype.name} {shape}"

    # --- one record ---

    def _fit(self, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self._shape is None:
            self._shape = array.shape
            return array
        if self._fixed:
            expected = math.prod(self._shape)
            if array.size != expected:
                raise ValueError(f"{array.size} numbers, expected {expected} for {self.describe()}")
            return array.reshape(self._shape)
        if array.shape != self._shape:
            first = describe_shape(self._shape)
            raise ValueError(f"shape {describe_shape(array.shape)}, the first sample had {first}")
        return array

    def _fit_label(self, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self._label_shape is None:
            self._label_shape = array.shape
        elif array.shape != self._label_shape:
            first = describe_shape(self._label_shape)
            raise ValueError(f"label of shape {describe_shape(array.shape)}, the first had {first}")
        return array

    def _split(self, document: Any, labelled: bool) -> tuple[Any, Any]:
        """(the sample's part of the document, the label's part or None) as the config names them."""
        label_field, data_field = self.config.label_field, self.config.data_field
        label = None
        if label_field is not None:
            if not isinstance(document, Mapping):
                raise ValueError(f"value is a JSON {_kind(document)}, not an object with the field {label_field!r}")
            if labelled and label_field not in document:
                raise ValueError(f"value has no label field {label_field!r}")
            label = document.get(label_field)
            document = {k: v for k, v in document.items() if k != label_field}
        if data_field is not None:
            if not isinstance(document, Mapping) or data_field not in document:
                raise ValueError(f"value has no data field {data_field!r}")
            document = document[data_field]
        return document, label

    def _sample(self, raw: bytes | None) -> np.ndarray[Any, Any]:
        data, _ = self._split(self.document(raw), labelled=False)
        return self._fit(numbers(data, "value"))

    def _key_label(self, raw: bytes | None) -> np.ndarray[Any, Any]:
        if raw is None:
            raise ValueError("no label (the record has no key)")
        return self._fit_label(numbers(parse_json(raw, "label"), "label"))

    def _labelled(self, raw: bytes | None) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        data, label = self._split(self.document(raw), labelled=True)
        y = self._fit_label(numbers(label, "label"))  # the label first: a bad one must not fix the shape
        return self._fit(numbers(data, "value")), y

    # --- a batch ---

    def _whole_batch(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None) -> Decoded | None:
        """The batch in one ``np.asarray`` when every document is a plain list; None to go record by record."""
        if self.config.label_field is not None or self.config.data_field is not None or not values:
            return None
        try:
            documents = [self.document(raw) for raw in values]
            if not all(isinstance(d, list) for d in documents):
                return None
            x = np.asarray(documents, dtype=np.float64)
            y = None
            if keys is not None:
                labels = [parse_json(raw, "label") for raw in keys]
                if not all(isinstance(v, (int, float, list)) and not isinstance(v, bool) for v in labels):
                    return None
                y = np.asarray(labels, dtype=np.float64)
        except Exception:  # ragged, strings, limits, anything: the record-by-record path says which and why
            return None
        shape = tuple(x.shape[1:])
        if self._fixed and self._shape is not None:
            if math.prod(shape) != math.prod(self._shape):
                return None
            x = x.reshape(len(values), *self._shape)
        elif self._shape is not None and shape != self._shape:
            return None
        if y is not None and self._label_shape is not None and tuple(y.shape[1:]) != self._label_shape:
            return None
        self._shape = self._shape if self._shape is not None else shape
        if y is not None:
            self._label_shape = tuple(y.shape[1:])
        return Decoded(x=x.astype(self.dtype, copy=False), y=None if y is None else _label_type(y))

    def decode(self, values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None) -> Decoded:
        if keys is not None and len(keys) != len(values):
            raise ValueError(f"{len(values)} values but {len(keys)} keys")
        whole = self._whole_batch(values, keys)
        if whole is not None:
            return whole
        if keys is None or self.config.label_field is None:
            xs, ys, bad = each_record(values, keys, self._sample, self._key_label)
        else:
            # The label is in the value: keys play no part.
            pairs, _, bad = each_record(values, None, self._labelled, self._labelled)
            xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
        shape = self._shape or ()
        x_array = np.stack(xs).astype(self.dtype, copy=False) if xs else np.zeros((0, *shape), dtype=self.dtype)
        if keys is None:
            return Decoded(x=x_array, y=None, bad=bad)
        labels = np.stack(ys) if ys else np.zeros((0, *(self._label_shape or ())))
        return Decoded(x=x_array, y=_label_type(labels), bad=bad)


class TelegrafJsonDecoder(JsonDecoder):
    """TELEGRAF_STR_JSON values: the JSON document in a Telegraf metric's ``fields.value`` string,
    then as ``JsonDecoder`` (labels from ``label_field`` or the record's key, plain JSON)."""

    input_format = "TELEGRAF_STR_JSON"

    def document(self, raw: bytes | None) -> Any:
        return telegraf_payload(raw, "value")
