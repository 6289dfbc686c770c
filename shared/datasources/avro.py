"""AVRO data sources (upstream's ``AvroSink``): value and key are schemaless Avro binary.

No container header and no registry prefix (docs/contracts.md): a
consumer decodes them with the schemas the control message carries in
``input_config`` (``data_scheme``, ``label_scheme``, the schemas' JSON text).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from fastavro import parse_schema, schemaless_writer
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate

from shared.datasources.async_sink import (
    DEFAULT_CONTROL_TOPIC,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_REQUEST_TIMEOUT_MS,
    AsyncKafkaMLSink,
)
from shared.datasources.sync_sink import KafkaMLSink
from shared.kafka_security import KafkaSecurity

SchemaInput = str | Mapping[str, Any]

# numpy type name → Avro primitive, for schemas built from columns (``send_file``).
AVRO_TYPES = {
    "bool": "boolean",
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "uint8": "int",
    "uint16": "int",
    "int64": "long",
    "uint32": "long",
    "float16": "float",
    "half": "float",
    "float32": "float",
    "float": "double",  # upstream's "float" is float64
    "float64": "double",
    "double": "double",
}


def avro_type(numpy_type: str) -> str:
    try:
        return AVRO_TYPES[numpy_type]
    except KeyError:
        raise ValueError(f"no Avro type for {numpy_type!r}; use one of {', '.join(sorted(AVRO_TYPES))}") from None


def avro_name(text: str) -> str:
    """A valid Avro field name from a column name: ``"mean radius"`` → ``"mean_radius"``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text.strip()) or "field"
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


def record_schema(name: str, fields: Mapping[str, str], *, doc: str | None = None) -> dict[str, Any]:
    """A record schema with one field per ``{field name: Avro type}`` (names are made valid and unique)."""
    seen: set[str] = set()
    out = []
    for field, kind in fields.items():
        base = candidate = avro_name(field)
        n = 1
        while candidate in seen:
            n += 1
            candidate = f"{base}_{n}"
        seen.add(candidate)
        out.append({"name": candidate, "type": kind})
    schema: dict[str, Any] = {"type": "record", "name": avro_name(name), "fields": out}
    if doc:
        schema["doc"] = doc
    return schema


def load_schema(schema: SchemaInput | None, filename: str | Path | None, which: str) -> str | None:
    """The schema's JSON text from a dict, JSON text, or a file (upstream reads ``.avsc`` files)."""
    if schema is not None and filename is not None:
        raise ValueError(f"give {which}_scheme or {which}_scheme_filename, not both")
    if filename is not None:
        try:
            text = Path(filename).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the {which} schema file {filename}: {exc}") from exc
    elif schema is None:
        return None
    elif isinstance(schema, str):
        text = schema
    else:
        text = json.dumps(schema)
    try:
        parse_schema(json.loads(text))
    except Exception as exc:  # fastavro and json raise several types; all mean "not a schema"
        raise ValueError(f"the {which} schema is not a valid Avro schema: {exc}") from exc
    return text


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values: Avro validation accepts only those."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class AvroEncoder:
    """Encodes records with a data schema and an optional label schema (schemaless binary)."""

    def __init__(self, data_scheme: str, label_scheme: str | None = None) -> None:
        self.data_scheme = data_scheme
        self.label_scheme = label_scheme
        self._data = parse_schema(json.loads(data_scheme))
        self._label = parse_schema(json.loads(label_scheme)) if label_scheme is not None else None

    @staticmethod
    def _write(schema: Any, record: Any, which: str) -> bytes:
        if isinstance(record, bytes | bytearray | memoryview):
            return bytes(record)  # already encoded by the caller
        record = _plain(record)
        try:
            validate(record, schema, raise_errors=True)
        except AvroValidationError as exc:
            raise ValueError(f"the {which} record does not match its schema: {exc}") from exc
        buffer = io.BytesIO()
        schemaless_writer(buffer, schema, record)
        return buffer.getvalue()

    def encode_data(self, data: Any) -> bytes:
        return self._write(self._data, data, "data")

    def encode_label(self, label: Any) -> bytes:
        if self._label is None:
            raise ValueError("a label was sent but the sink has no label schema (label_scheme)")
        return self._write(self._label, label, "label")

    def encode(self, data: Any, label: Any = None) -> tuple[bytes, bytes | None]:
        return self.encode_data(data), None if label is None else self.encode_label(label)

    @property
    def input_config(self) -> dict[str, Any]:
        return {"data_scheme": self.data_scheme, "label_scheme": self.label_scheme}


class AsyncAvroSink(AsyncKafkaMLSink):
    """AVRO data source, asyncio flavour: ``await sink.send(data_record, label_record)``. Parameters as ``AvroSink``."""

    input_format: ClassVar[Literal["RAW", "AVRO"]] = "AVRO"
    encoder: AvroEncoder

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        deployment_id: int | str | None = None,
        data_scheme_filename: str | Path | None = None,
        label_scheme_filename: str | Path | None = None,
        description: str = "",
        validation_rate: float = 0.0,
        test_rate: float = 0.0,
        control_topic: str = DEFAULT_CONTROL_TOPIC,
        group_id: str = "sink",
        unsupervised_topic: str | None = None,
        *,
        data_scheme: SchemaInput | None = None,
        label_scheme: SchemaInput | None = None,
        bootstrap_servers: str | Sequence[str] | None = None,
        dataset_restrictions: Mapping[str, Any] | str | None = None,
        partitions: int | None = None,
        progress: bool = False,
        total: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        data_text = load_schema(data_scheme, data_scheme_filename, "data")
        if data_text is None:
            raise ValueError("an AVRO sink needs a data schema: data_scheme or data_scheme_filename")
        self.encoder = AvroEncoder(data_text, load_schema(label_scheme, label_scheme_filename, "label"))
        super().__init__(
            boostrap_servers=boostrap_servers,
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            deployment_id=deployment_id,
            description=description,
            validation_rate=validation_rate,
            test_rate=test_rate,
            control_topic=control_topic,
            group_id=group_id,
            unsupervised_topic=unsupervised_topic,
            dataset_restrictions=dataset_restrictions,
            partitions=partitions,
            progress=progress,
            total=total,
            max_in_flight=max_in_flight,
            request_timeout_ms=request_timeout_ms,
            producer_config=producer_config,
            security=security,
        )

    @property
    def data_schema(self) -> str:
        return self.encoder.data_scheme

    @property
    def label_schema(self) -> str | None:
        return self.encoder.label_scheme

    async def send_avro(self, data: Any, label: Any = None) -> None:
        """Upstream's name for ``send`` on an AVRO sink."""
        await self.send(data, label)


class AvroSink(KafkaMLSink[AsyncAvroSink]):
    """AVRO data source with upstream Kafka-ML's constructor and methods (blocking).

    Args (upstream's, in upstream's order):
        boostrap_servers: Kafka brokers (upstream's spelling; ``bootstrap_servers=`` works too).
        topic, deployment_id: the data topic and the deployment that trains on it.
        data_scheme_filename, label_scheme_filename: ``.avsc`` files with the record schemas.
        description, validation_rate, test_rate, control_topic, group_id (unused), unsupervised_topic:
            as for ``RawSink``.

    Keyword-only additions:
        data_scheme, label_scheme: the schemas as dicts or JSON text instead of files.
        dataset_restrictions, partitions, progress, total, max_in_flight, request_timeout_ms,
        producer_config: as for ``RawSink``.

    ``send(data, label)`` / ``send_avro(data, label)`` take dicts matching the schemas (numpy scalars are
    fine) or bytes already encoded; a record that does not match raises ValueError naming the field.
    """

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        deployment_id: int | str | None = None,
        data_scheme_filename: str | Path | None = None,
        label_scheme_filename: str | Path | None = None,
        description: str = "",
        validation_rate: float = 0.0,
        test_rate: float = 0.0,
        control_topic: str = DEFAULT_CONTROL_TOPIC,
        group_id: str = "sink",
        unsupervised_topic: str | None = None,
        *,
        data_scheme: SchemaInput | None = None,
        label_scheme: SchemaInput | None = None,
        bootstrap_servers: str | Sequence[str] | None = None,
        dataset_restrictions: Mapping[str, Any] | str | None = None,
        partitions: int | None = None,
        progress: bool = False,
        total: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        super().__init__(
            AsyncAvroSink(
                boostrap_servers,
                topic,
                deployment_id,
                data_scheme_filename,
                label_scheme_filename,
                description,
                validation_rate,
                test_rate,
                control_topic,
                group_id,
                unsupervised_topic,
                data_scheme=data_scheme,
                label_scheme=label_scheme,
                bootstrap_servers=bootstrap_servers,
                dataset_restrictions=dataset_restrictions,
                partitions=partitions,
                progress=progress,
                total=total,
                max_in_flight=max_in_flight,
                request_timeout_ms=request_timeout_ms,
                producer_config=producer_config,
                security=security,
            )
        )

    @property
    def data_schema(self) -> str:
        return self.sink.data_schema

    @property
    def label_schema(self) -> str | None:
        return self.sink.label_schema

    def send_avro(self, data: Any, label: Any = None) -> None:
        """Upstream's name for ``send`` on an AVRO sink."""
        self.send(data, label)
