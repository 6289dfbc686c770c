"""Where each input's output goes, encoded, and how it is sent.

An output goes to partition ``input partition mod output partitions``: values
to predict usually have no key, and a keyed partitioner would scatter one
input partition over every output partition; this way the outputs of one
input partition stay in one output partition, in order. The input's key and
headers are copied, and one header is added to every output (a prediction or a
tensor sent up): ``kafkaml-model-version``, the version of the model that made
it (built once per version: a switch replaces it between two micro-batches; one
the input carried is replaced, so an upper model's outputs name its own). A
prediction is ``{"values": ...}``, the model's output for that input with its
nesting kept, as upstream writes it (:func:`encode_predictions`).

In a distributed chain (``upper_topic`` and ``limit``, see docs/contracts.md)
the model has two outputs or more: the first is the tensor for the upper
model, the last the prediction. When the prediction's largest value is below
``limit`` the tensor goes up as raw float32 bytes (C order), else the
prediction goes to the output topic.

Outputs are appended to aiokafka record batches per partition: one future
per partition batch, not one per message.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Final

import numpy as np

from services.inferencer.stats import predicted_classes
from shared.errors import WorkloadFailed
from shared.events.inference import ServeSpec
from shared.events.versions import MODEL_VERSION_HEADER
from shared.kafka import Producer

__all__ = ["Headers", "Output", "Record", "Router", "encode_predictions", "version_header"]

Record = Any  # aiokafka's ConsumerRecord[bytes, bytes] (aiokafka ships no type information)
Headers = list[tuple[str, bytes]]


# (topic, partition, key, value, headers): a plain tuple, the cheapest to build per message.
Output = tuple[str, int, bytes | None, bytes, Headers]


def version_header(version: int) -> tuple[str, bytes]:
    """The header every output of ``version`` carries (ASCII decimal)."""
    return MODEL_VERSION_HEADER, str(version).encode("ascii")


# Significant digits that give back the exact value of a float of this size (float16, float32).
_ROUND_TRIP_DIGITS: Final = {2: 5, 4: 9}


def _row_format(shape: tuple[int, ...], number: bytes) -> bytes:
    """The JSON of one output of ``shape`` with a ``%`` format per value, nested as the shape."""
    if not shape:
        return number
    inner = _row_format(shape[1:], number)
    return b"[" + b", ".join([inner] * shape[0]) + b"]"


def _nulls(value: Any) -> Any:
    """``value`` (floats, nested in lists) with every value that is not finite as None."""
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value if math.isfinite(value) else None


def encode_predictions(outputs: np.ndarray[Any, Any]) -> list[bytes]:
    """``{"values": ...}`` per input: its part of the model's output as JSON numbers, nested as the
    output's shape after the batch dimension (upstream writes ``predict(x).tolist()[0]``): ``[...]``
    for a vector, ``[[...], ...]`` for a matrix; a model with one number per input writes ``[v]``.

    float16/float32 outputs are written with the digits that round-trip their
    type (``%.9g`` for float32: ``0.0871744305``, ``1`` for 1.0), one ``%``
    format for the whole batch, much cheaper than ``json.dumps`` (the largest
    cost per message at full speed). Other types go through ``json.dumps``
    (shortest float64 repr). A value that is not finite becomes ``null``:
    JSON has no NaN or Infinity.
    """
    if not len(outputs):  # a distributed batch whose every input went up (reshape(0, -1) would raise)
        return []
    if outputs.ndim == 1:  # one number per input: a list of one, as a vector of one would be
        outputs = outputs.reshape(len(outputs), 1)
    finite = bool(np.isfinite(outputs).all()) if outputs.dtype.kind == "f" else True
    digits = _ROUND_TRIP_DIGITS.get(outputs.dtype.itemsize) if outputs.dtype.kind == "f" else None
    if finite and digits is not None:
        row_format = b'{"values": ' + _row_format(outputs.shape[1:], b"%%.%dg" % digits) + b"}"
        # One ``%`` for the whole batch, split at the newlines (no number is written with one):
        # a format and a tuple per row cost more than the formatting itself. C order is the nesting's.
        return (b"\n".join([row_format] * len(outputs)) % tuple(outputs.ravel().tolist())).split(b"\n")
    lists: list[Any] = outputs.astype(np.float64).tolist()
    if not finite:
        lists = [_nulls(row) for row in lists]
    dumps = json.dumps
    return [b'{"values": ' + dumps(row).encode() + b"}" for row in lists]


class Router:
    """Routes a batch's outputs (prediction, or tensor sent up) and sends them."""

    def __init__(self, spec: ServeSpec, producer: Producer, *, distributed: bool, version: int) -> None:
        self.spec = spec
        self.producer = producer
        self.distributed = distributed
        self._partition_counts: dict[str, int] = {}
        self.set_version(version)

    def set_version(self, version: int) -> None:
        """The outputs routed from now on name ``version`` (the header is built here, once)."""
        self.version = version
        self._version_header = version_header(version)
        # Outputs of inputs without headers share this list (aiokafka's batch builder only reads it).
        self._version_only: Headers = [self._version_header]

    async def route(
        self,
        records: list[Record],
        indices: list[int],
        arrays: list[np.ndarray[Any, Any]],
        outputs: list[Output],
        sent: list[int],
    ) -> np.ndarray[Any, Any] | None:
        """Appends each input's output (prediction, or tensor sent up) in input order; the predicted classes."""
        prediction = arrays[-1]
        count = len(indices)
        if len(prediction) != count:
            raise WorkloadFailed(f"the model returned {len(prediction)} outputs for {count} inputs")
        up: np.ndarray[Any, Any] = np.zeros(count, dtype=bool)
        if self.distributed:
            if len(arrays) < 2:
                raise WorkloadFailed(
                    "a distributed inference needs a model with two outputs (to the upper model, prediction); "
                    f"this one has {len(arrays)}"
                )
            limit = float(self.spec.limit or 0.0)
            up = prediction.reshape(count, -1).max(axis=1) < limit
        spec = self.spec
        output_partitions = await self.partitions_of(spec.output_topic)
        predictions = iter(encode_predictions(prediction[~up] if self.distributed else prediction))
        tensors: Any = iter(())
        upper_partitions = 1
        if up.any():
            assert spec.upper_topic is not None  # distributed
            upper_partitions = await self.partitions_of(spec.upper_topic)
            # Raw float32 in C order: the upper model's RAW input.
            tensors = iter(np.ascontiguousarray(arrays[0][up], dtype=np.float32))
        append = outputs.append
        mark, only = self._version_header, self._version_only
        if not self.distributed:  # the common case, per message: one tuple, nothing else
            topic = spec.output_topic
            for index, value in zip(indices, predictions, strict=True):
                record = records[index]
                # aiokafka's record batches take headers as a list only.
                if record.headers:
                    headers = [h for h in record.headers if h[0] != MODEL_VERSION_HEADER]
                    headers.append(mark)
                else:
                    headers = only
                append((topic, record.partition % output_partitions, record.key, value, headers))
            sent.extend(indices)
            return predicted_classes(prediction)
        for index, goes_up in zip(indices, up.tolist(), strict=True):
            record = records[index]
            if goes_up:
                assert spec.upper_topic is not None
                topic, partitions, value = spec.upper_topic, upper_partitions, next(tensors).tobytes()
            else:
                topic, partitions, value = spec.output_topic, output_partitions, next(predictions)
            if record.headers:
                headers = [h for h in record.headers if h[0] != MODEL_VERSION_HEADER]
                headers.append(mark)
            else:
                headers = only
            append((topic, record.partition % partitions, record.key, value, headers))
            sent.append(index)
        return predicted_classes(prediction[~up])

    async def partitions_of(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            # The orchestrator creates the output topics; this also waits for their metadata.
            count = len(await self.producer._producer.partitions_for(topic))
            self._partition_counts[topic] = count
        return count

    async def send(self, outputs: list[Output]) -> list[asyncio.Future[Any]]:
        """Appends the outputs to one record batch per partition (more when one fills up) and submits them."""
        producer = self.producer._producer  # the helper's aiokafka producer: batches need its batch API
        batches: list[tuple[str, int, Any]] = []
        open_batches: dict[tuple[str, int], Any] = {}
        for topic, partition, key, value, headers in outputs:
            place = (topic, partition)
            builder = open_batches.get(place)
            if builder is None:
                builder = open_batches[place] = producer.create_batch()
                batches.append((topic, partition, builder))
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                builder = open_batches[place] = producer.create_batch()
                batches.append((topic, partition, builder))
                builder.append(timestamp=None, key=key, value=value, headers=headers)
        # Submitted in creation order: one partition's batches stay in order (aiokafka sends
        # one batch per partition at a time).
        return [await producer.send_batch(builder, topic, partition=partition) for topic, partition, builder in batches]
