"""``kafkaml send``: stream a CSV, ``.npy`` or ``.npz`` file to Kafka as a data source.

The command line only maps options onto :func:`send_file`; everything else is here.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.control import ControlMessage, numpy_dtype
from shared.datasources.async_sink import DEFAULT_CONTROL_TOPIC
from shared.datasources.avro import AvroSink, avro_type, record_schema
from shared.datasources.raw import RawSink, as_array
from shared.datasources.sync_sink import KafkaMLSink
from shared.kafka_security import KafkaSecurity


@dataclass
class Table:
    """A data set read from a file: one row of ``features`` per sample, ``labels`` aligned (or None)."""

    features: np.ndarray[Any, Any]
    labels: np.ndarray[Any, Any] | None
    feature_names: list[str]
    label_name: str | None


def _parse_column(cells: Sequence[str], dtype: np.dtype[Any], column: str) -> np.ndarray[Any, Any]:
    """Text cells as ``dtype``, with an error naming the column and the first bad cell."""
    if dtype.kind == "b":
        truth = {"1": True, "true": True, "t": True, "yes": True, "0": False, "false": False, "f": False, "no": False}
        try:
            return np.array([truth[c.strip().lower()] for c in cells], dtype=bool)
        except KeyError as exc:
            raise ValueError(f"column {column!r} holds {exc.args[0]!r}, not a boolean (0/1, true/false)") from None
    try:
        numbers = np.asarray([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        bad = next(c for c in cells if not _is_number(c))
        raise ValueError(f"column {column!r} holds {bad!r}, not a number; encode it as numbers first") from None
    if dtype.kind in "iu":
        if not np.all(np.isfinite(numbers)) or not np.all(numbers == np.round(numbers)):
            raise ValueError(f"column {column!r} holds non-integer values; it cannot be {dtype.name}")
        info = np.iinfo(dtype)
        if numbers.size and (numbers.min() < info.min or numbers.max() > info.max):
            raise ValueError(f"column {column!r} holds values outside {dtype.name} ({info.min}..{info.max})")
    return numbers.astype(dtype)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _label_index(header: list[str], label_column: str | int) -> int:
    if isinstance(label_column, str):
        if label_column in header:
            return header.index(label_column)
        # The command line hands every option over as text: "3" or "-1" may mean an index.
        if not label_column.lstrip("-").isdigit():
            raise ValueError(f"no column {label_column!r} in the header ({', '.join(header)})")
        label_column = int(label_column)
    if not -len(header) <= label_column < len(header):
        raise ValueError(f"label column index {label_column} is outside the {len(header)} columns")
    return label_column % len(header)


def read_csv(path: Path, label_column: str | int | None, data_type: str, label_type: str) -> Table:
    """A CSV with a header row; ``label_column`` (name or index) holds labels, the rest are features."""
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path} line {number} has {len(row)} cells, the header has {len(header)}")
    label_at = None if label_column is None else _label_index(header, label_column)
    columns = list(zip(*body, strict=True)) if body else [() for _ in header]
    data_dtype = numpy_dtype(data_type)
    feature_at = [i for i in range(len(header)) if i != label_at]
    if not feature_at:
        raise ValueError(f"{path} has no feature columns besides the label")
    features = np.column_stack([_parse_column(columns[i], data_dtype, header[i]) for i in feature_at])
    labels = None
    if label_at is not None:
        labels = _parse_column(columns[label_at], numpy_dtype(label_type), header[label_at])
    return Table(
        features=features,
        labels=labels,
        feature_names=[header[i] for i in feature_at],
        label_name=None if label_at is None else header[label_at],
    )


def read_arrays(path: Path, labels_path: Path | None) -> Table:
    """``.npy`` features (labels from ``labels_path``) or ``.npz`` with arrays ``x`` and optional ``y``."""
    if path.suffix == ".npz":
        if labels_path is not None:
            raise ValueError("an .npz file carries its labels as array 'y'; labels_path is for .npy files")
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise ValueError(f"{path} has no array 'x' (it has: {', '.join(archive.files) or 'none'})")
            features = archive["x"]
            labels = archive["y"] if "y" in archive.files else None
    else:
        features = np.load(path, allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False) if labels_path is not None else None
    if features.ndim == 0:
        raise ValueError(f"{path} holds a single value, not one sample per row")
    if labels is not None and len(labels) != len(features):
        raise ValueError(f"{len(features)} samples but {len(labels)} labels")
    width = int(np.prod(features.shape[1:])) if features.ndim > 1 else 1
    return Table(features, labels, [f"x{i}" for i in range(width)], None if labels is None else "y")


def read_table(
    path: Path, *, label_column: str | int | None, labels_path: Path | None, data_type: str, label_type: str
) -> Table:
    if not path.is_file():
        raise ValueError(f"no file {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if labels_path is not None:
            raise ValueError("a CSV file carries its labels in label_column; labels_path is for .npy files")
        return read_csv(path, label_column, data_type, label_type)
    if suffix in (".npy", ".npz"):
        if label_column is not None:
            raise ValueError("label_column is for CSV files; give .npy labels with labels_path or .npz array 'y'")
        return read_arrays(path, labels_path)
    raise ValueError(f"{path.name}: expected a .csv, .npy or .npz file")


def _avro_records(features: np.ndarray[Any, Any], names: list[str]) -> list[dict[str, Any]]:
    if features.ndim > 2:
        raise ValueError(f"AVRO needs flat samples (one field per column), got shape {features.shape[1:]}")
    rows = features.reshape(len(features), -1).tolist()
    return [dict(zip(names, row, strict=True)) for row in rows]


def send_file(
    path: Path | str,
    *,
    bootstrap_servers: str,
    deployment_id: int,
    topic: str,
    label_column: str | int | None,
    labels_path: Path | str | None = None,
    input_format: Literal["RAW", "AVRO"] = "RAW",
    data_type: str = "float32",
    label_type: str = "float32",
    data_reshape: str | None = None,
    label_reshape: str | None = None,
    validation_rate: float = 0.1,
    test_rate: float = 0.1,
    control_topic: str = DEFAULT_CONTROL_TOPIC,
    description: str = "",
    partitions: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
    security: KafkaSecurity | None = None,
) -> ControlMessage:
    """Streams a data set file to ``topic`` for ``deployment_id`` and announces it; returns the control message.

    Args:
        path: ``.csv`` (header row; ``label_column`` is the label, every other column a feature),
            ``.npy`` (one sample per row, any sample shape) or ``.npz`` (arrays ``x`` and optional ``y``).
        label_column: CSV only: the label column's name or index (negative counts from the end; text
            that is not a column name but an integer is taken as an index). None: no labels (no keys).
        labels_path: ``.npy`` only: a second ``.npy`` with one label per sample.
        input_format: ``RAW`` (numpy bytes) or ``AVRO`` (records with one field per column, the schema
            built from the CSV header or named ``x0``…; the label record has one field).
        data_type, label_type: numpy types the features and labels are sent as (CSV cells are parsed
            as these; array files are cast to them, and a lossy cast such as float to int raises).
        data_reshape, label_reshape: RAW only: shapes announced for the trainer (default: the sample's).
        validation_rate, test_rate, control_topic, description: as in the control message.
        partitions: create ``topic`` with this many partitions when it does not exist.
        progress: a progress bar on stderr.
        echo: where the summary line goes (None: nowhere).
        security: how to reach a secured cluster (None: the ``KAFKAML_`` security settings).

    Raises ValueError for a file that cannot be read as asked, ``SinkError``/``DeliveryError`` when Kafka
    does not take the data (then nothing is announced).
    """
    source = Path(path)
    started = time.monotonic()
    format_name = input_format.upper()
    if format_name not in ("RAW", "AVRO"):
        raise ValueError(f"input_format must be RAW or AVRO, got {input_format!r}")
    table = read_table(
        source,
        label_column=label_column,
        labels_path=Path(labels_path) if labels_path is not None else None,
        data_type=data_type,
        label_type=label_type,
    )
    count = len(table.features)
    if count == 0:
        raise ValueError(f"{source} holds no samples")
    common: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "topic": topic,
        "deployment_id": deployment_id,
        "description": description,
        "validation_rate": validation_rate,
        "test_rate": test_rate,
        "control_topic": control_topic,
        "partitions": partitions,
        "progress": progress,
        "total": count,
        "security": security,
    }
    sink: KafkaMLSink[Any]
    samples: Iterable[Any] = table.features
    labels: Iterable[Any] | None = table.labels
    if format_name == "RAW":
        sink = RawSink(
            data_type=data_type,
            label_type=label_type if table.labels is not None else None,
            data_reshape=data_reshape,
            label_reshape=label_reshape,
            **common,
        )
    else:
        # Records first: what fails on the file's content fails before connecting.
        data_schema = record_schema("data", {name: avro_type(data_type) for name in table.feature_names})
        names = [field["name"] for field in data_schema["fields"]]
        samples = _avro_records(as_array(table.features, data_type, "data"), names)
        label_schema = None
        labels = None
        if table.labels is not None:
            label_schema = record_schema("label", {table.label_name or "label": avro_type(label_type)})
            field = label_schema["fields"][0]["name"]
            labels = [{field: value} for value in as_array(table.labels, label_type, "label").reshape(-1).tolist()]
        sink = AvroSink(data_scheme=data_schema, label_scheme=label_schema, **common)
    with sink:
        sink.send_many(samples, labels)
    message = sink.control_message
    if message is None:  # pragma: no cover - close() announces whenever samples were sent
        raise RuntimeError("the sink sent no control message")
    if echo is not None:
        count_partitions = len(sink.topic_partitions)
        plural = "partition" if count_partitions == 1 else "partitions"
        echo(
            f"sent {count} samples to topic {topic} ({count_partitions} {plural}) "
            f"for deployment {deployment_id} in {time.monotonic() - started:.1f} s"
        )
    return message
