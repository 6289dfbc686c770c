"""Upstream Kafka-ML's control message (docs/contracts.md), one per data set.

key: the deployment id, unsigned big-endian, any length (upstream sends one byte);
value: UTF-8 JSON. Unknown fields are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import Invalid
from shared.events.datasources import InputFormat
from shared.limits import check_shape

# Upstream's type names besides numpy's own, meaning what upstream's trainer and inferencer make of
# them: "float" is numpy's ``np.float``, Python's float, i.e. float64 (as in numpy itself).
DTYPE_ALIASES = {"half": "float16", "float": "float64", "double": "float64"}


def numpy_dtype(name: str) -> np.dtype[Any]:
    """A numpy dtype from a name in a control message; raises ValueError naming it."""
    try:
        return np.dtype(DTYPE_ALIASES.get(name, name))
    except TypeError as exc:
        raise ValueError(f"unknown data type {name!r} (use a numpy name such as uint8 or float32)") from exc


def parse_shape(text: str | int | list[int] | None) -> tuple[int, ...]:
    """``"8 8"`` → (8, 8); ``""``, ``"1"``, None → () (a scalar).

    Raises ValueError for a dimension below 1 or more elements than ``shared.limits`` allows.
    """
    if text is None:
        return ()
    if isinstance(text, int):
        dims = [text]
    elif isinstance(text, list):
        dims = [int(d) for d in text]
    else:
        parts = text.replace(",", " ").replace("(", " ").replace(")", " ").split()
        try:
            dims = [int(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"shape {text!r} is not space-separated integers") from exc
    check_shape(dims, text)
    return () if dims in ([], [1]) else tuple(dims)


def _known_dtype(name: str) -> str:
    if name:  # empty: not given
        numpy_dtype(name)
    return name


def _valid_shape(value: str | int | list[int] | None) -> str | int | list[int] | None:
    parse_shape(value)
    return value


# The field types of the sample configs: a numpy type name, and a shape (checked when parsed).
DtypeName = Annotated[str, AfterValidator(_known_dtype)]
ShapeText = Annotated[str | int | list[int] | None, AfterValidator(_valid_shape)]


def deployment_id_from_key(key: bytes | None) -> int:
    if not key:
        raise ValueError("a control message needs the deployment id as its key")
    return int.from_bytes(key, "big", signed=False)


def key_for_deployment(deployment_id: int) -> bytes:
    """The shortest big-endian encoding (one byte up to 255, as upstream sends)."""
    if deployment_id < 0:
        raise ValueError("deployment ids are not negative")
    return deployment_id.to_bytes(max(1, (deployment_id.bit_length() + 7) // 8), "big")


@dataclass(frozen=True)
class TopicRange:
    """Records ``start`` (inclusive) to ``end`` (exclusive) of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.start}:{self.end}"

    @property
    def count(self) -> int:
        return self.end - self.start


class RawConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data_type: DtypeName = Field(default="uint8", min_length=1)
    label_type: DtypeName | None = "uint8"
    data_reshape: ShapeText = None
    label_reshape: ShapeText = None

    @property
    def data_dtype(self) -> np.dtype[Any]:
        return numpy_dtype(self.data_type)

    @property
    def label_dtype(self) -> np.dtype[Any]:
        return numpy_dtype(self.label_type or "float32")

    @property
    def data_shape(self) -> tuple[int, ...]:
        return parse_shape(self.data_reshape)

    @property
    def label_shape(self) -> tuple[int, ...]:
        return parse_shape(self.label_reshape)


class JsonConfig(BaseModel):
    """The optional ``input_config`` of JSON and TELEGRAF_STR_JSON samples (upstream names none).

    ``data_type``/``data_reshape``: a sample's type and shape. ``label_field``: in training, the
    label is this field of the sample's object (else the record's key, JSON as well);
    ``data_field``: the sample is this field (else the object, less ``label_field``).
    """

    model_config = ConfigDict(extra="ignore")

    data_type: DtypeName | None = None
    data_reshape: ShapeText = None
    label_field: str | None = Field(default=None, min_length=1)
    data_field: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def distinct_fields(self) -> JsonConfig:
        if self.label_field is not None and self.label_field == self.data_field:
            raise ValueError(f"label_field and data_field are both {self.label_field!r}")
        return self

    @property
    def data_dtype(self) -> np.dtype[Any]:
        return numpy_dtype(self.data_type or "float32")

    @property
    def data_shape(self) -> tuple[int, ...] | None:
        """None when the config names no shape (the first good sample sets it)."""
        return None if self.data_reshape in (None, "") else parse_shape(self.data_reshape)


class AvroConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data_scheme: str | dict[str, Any]
    label_scheme: str | dict[str, Any] | None = None

    @field_validator("data_scheme", "label_scheme")
    @classmethod
    def parses(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if value is None:
            return None
        from fastavro import parse_schema

        try:
            parse_schema(json.loads(value) if isinstance(value, str) else value)
        except Exception as exc:  # fastavro raises several types
            raise ValueError(f"not a valid Avro schema: {exc}") from exc
        return value

    def schema_of(self, which: Literal["data", "label"]) -> dict[str, Any] | None:
        raw = self.data_scheme if which == "data" else self.label_scheme
        if raw is None:
            return None
        parsed: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
        return parsed


class ControlMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    topic: str = Field(min_length=1)
    input_format: InputFormat
    input_config: dict[str, Any] = Field(default_factory=dict)
    validation_rate: float = Field(default=0.0, ge=0, lt=1)
    test_rate: float = Field(default=0.0, ge=0, lt=1)
    total_msg: int | None = Field(default=None, ge=0)
    description: str = ""
    unsupervised_topic: str | None = None
    dataset_restrictions: dict[str, Any] | str | None = Field(default_factory=dict)
    incremental: bool = False

    @field_validator("input_format", mode="before")
    @classmethod
    def upper_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def consistent(self) -> ControlMessage:
        if self.validation_rate + self.test_rate >= 1:
            raise ValueError("validation_rate + test_rate must leave samples to train on (sum below 1)")
        if self.input_format == "RAW":
            RawConfig.model_validate(self.input_config)
        elif self.input_format == "AVRO":
            AvroConfig.model_validate(self.input_config)
        else:
            JsonConfig.model_validate(self.input_config)
        if self.total_msg is not None:
            self.ranges()  # the bounded form must name its ranges
        return self

    def ranges(self) -> list[TopicRange]:
        """The announced ranges; the online form (``total_msg`` null) names bare topics."""
        found = []
        for part in self.topic.split(","):
            pieces = part.strip().split(":")
            if len(pieces) != 4:
                raise ValueError(f"topic range {part!r} is not topic:partition:start:end")
            name, partition, start, end = pieces
            try:
                found.append(TopicRange(name, int(partition), int(start), int(end)))
            except ValueError as exc:
                raise ValueError(f"topic range {part!r} has a non-integer partition or offset") from exc
            if found[-1].start < 0 or found[-1].end < found[-1].start or found[-1].partition < 0:
                raise ValueError(f"topic range {part!r} is empty backwards or negative")
        return found

    def raw_config(self) -> RawConfig:
        return RawConfig.model_validate(self.input_config)

    def avro_config(self) -> AvroConfig:
        return AvroConfig.model_validate(self.input_config)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def parse_control(value: bytes | None) -> ControlMessage:
    """Decodes and checks a control message; raises ``Invalid`` saying what is wrong."""
    if value is None:
        raise Invalid("a control message needs a value")
    try:
        return ControlMessage.model_validate_json(value)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()[:5])
        raise Invalid(f"malformed control message: {reasons}") from exc
