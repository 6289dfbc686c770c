"""Where each input's output goes, encoded, and how it is sent.

An output goes to partition ``input partition mod output partitions``: values
to predict usually have no key, and a keyed partitioner would scatter one
input partition over every output partition; this way the outputs of one
input partition stay in one output partition, in order. The input's key and
headers are copied, nothing is added. A prediction is ``{"values": [...]}``,
the model's output for that input flattened (:func:`encode_predictions`).

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
from shared.kafka import Producer

__all__ = ["Headers", "Output", "Record", "Router", "encode_predictions"]

Record = Any  # aiokafka's ConsumerRecord[bytes, bytes] (aiokafka ships no type information)
Headers = list[tuple[str, bytes]]


# (topic, partition, key, value, headers): a plain tuple, the cheapest to build per message.
Output = tuple[str, int, bytes | None, bytes, Headers]
# Records without headers share this (aiokafka's batch builder only reads it).
_NO_HEADERS: Final[Headers] = []


# Significant digits that give back the exact value of a float of this size (float16, float32).
_ROUND_TRIP_DIGITS: Final = {2: 5, 4: 9}


def encode_predictions(outputs: np.ndarray[Any, Any]) -> list[bytes]:
    """``{"values": [...]}`` per input: its row of the model's output, flattened, as JSON numbers.

    float16/float32 outputs are written with the digits that round-trip their
    type (``%.9g`` for float32: ``0.0871744305``, ``1`` for 1.0), one ``%``
    format per row, much cheaper than ``json.dumps`` (the largest cost per
    message at full speed). Other types go through ``json.dumps`` (shortest
    float64 repr). A value that is not finite becomes ``null``: JSON has no
    NaN or Infinity.
    """
    if not len(outputs):  # a distributed batch whose every input went up (reshape(0, -1) would raise)
        return []
    rows = outputs.reshape(len(outputs), -1)
    finite = bool(np.isfinite(rows).all()) if rows.dtype.kind == "f" else True
    digits = _ROUND_TRIP_DIGITS.get(rows.dtype.itemsize) if rows.dtype.kind == "f" else None
    if finite and digits is not None:
        row_format = b'{"values": [' + b", ".join([b"%%.%dg" % digits] * rows.shape[1]) + b"]}"
        # One ``%`` for the whole batch, split at the newlines (no number is written with one):
        # a format and a tuple per row cost more than the formatting itself.
        return (b"\n".join([row_format] * len(rows)) % tuple(rows.ravel().tolist())).split(b"\n")
    lists: list[Any] = rows.astype(np.float64).tolist()
    if not finite:
        lists = [[v if math.isfinite(v) else None for v in row] for row in lists]
    dumps = json.dumps
    return [b'{"values": ' + dumps(row).encode() + b"}" for row in lists]


class Router:
    """Routes a batch's outputs (prediction, or tensor sent up) and sends them."""

    def __init__(self, spec: ServeSpec, producer: Producer, *, distributed: bool) -> None:
        self.spec = spec
        self.producer = producer
        self.distributed = distributed
        self._partition_counts: dict[str, int] = {}

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
        if not self.distributed:  # the common case, per message: one tuple, nothing else
            topic = spec.output_topic
            for index, value in zip(indices, predictions, strict=True):
                record = records[index]
                # aiokafka's record batches take headers as a list only.
                headers = list(record.headers) if record.headers else _NO_HEADERS
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
            headers = list(record.headers) if record.headers else _NO_HEADERS
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
