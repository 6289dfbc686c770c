"""What a trainer tells the rest of the system: status, epochs, the artifact, the outcome.

Also the outcome's parts both training modules compute the same way: the
result of one model (:class:`ModelResult`), the confusion matrix, and the
failure of a job (:class:`WorkloadFailed`).

Every publish waits for the broker's acknowledgement (``Producer.publish``), so
a ``TrainingFinished`` is only sent once every chunk of its artifact landed.
The training itself runs in a worker thread; it publishes through
:meth:`Publisher.publish_from_thread`, which hands the send to the event loop
and waits for its acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from shared.artifacts import chunk_artifact
from shared.errors import WorkloadFailed
from shared.events import Envelope
from shared.events.signing import Key, SigningKey
from shared.events.training import (
    ArtifactRef,
    DatasourceRef,
    EpochCompleted,
    EpochMetrics,
    Failure,
    ResultStatus,
    SampleCounts,
    StatusChange,
    TrainingFailed,
    TrainingFinished,
    TrainingOutcome,
    TrainingStatusChanged,
)
from shared.kafka import Producer

__all__ = [
    "ModelResult",
    "Publisher",
    "WorkloadFailed",
    "confusion_matrix",
    "split_epoch_logs",
]

log = logging.getLogger("kafkaml.trainer")

T = TypeVar("T")


def split_epoch_logs(logs: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, float], dict[str, float]]:
    """Keras-style logs → (train, validation) metrics, ``val_`` and ``prefix`` taken off the names."""
    train: dict[str, float] = {}
    val: dict[str, float] = {}
    for name, value in logs.items():
        target = train
        if name.startswith("val_"):
            target, name = val, name[4:]
        if prefix:
            if not name.startswith(prefix):
                continue
            name = name[len(prefix) :]
        number = _number(value)
        if number is not None:
            target[name] = number
    return train, val


def _number(value: Any) -> float | None:
    """A metric's value as a float; None for what is not one number (a matrix, a list)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.size != 1:
        return None
    return float(array.reshape(()))


def confusion_matrix(predictions: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> list[list[int]] | None:
    """Rows are true classes, columns predicted ones; None when the model is not a classifier.

    A classifier has several outputs (the argmax is the class), or one
    probability with 0/1 labels (a binary classifier: above 0.5 is class 1).
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels).reshape(len(labels), -1)
    if len(predictions) == 0 or labels.shape[1] != 1:
        return None
    truth_values = labels[:, 0]
    outputs = predictions.reshape(len(predictions), -1)
    if outputs.shape[1] > 1:
        classes = outputs.shape[1]
        predicted = outputs.argmax(axis=1)
    elif np.isin(truth_values, (0, 1)).all() and ((outputs >= 0) & (outputs <= 1)).all():
        classes = 2
        predicted = (outputs[:, 0] > 0.5).astype(np.int64)
    else:
        return None
    if not np.all(np.equal(np.mod(truth_values, 1), 0)):
        return None
    truth = truth_values.astype(np.int64)
    if truth.min() < 0 or truth.max() >= classes:
        log.warning("labels outside 0..%d: no confusion matrix", classes - 1)
        return None
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return [[int(v) for v in row] for row in matrix]


@dataclass
class ModelResult:
    """What training one model produced, ready to publish."""

    result_id: int
    test_metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None
    artifact: bytes
    format: Literal["keras", "pt"]


class Publisher:
    """Progress and outcome events of one job's results (one deployment)."""

    def __init__(self, producer: Producer, deployment_id: int, signing_key: SigningKey | None = None) -> None:
        self.producer = producer
        self.deployment_id = deployment_id
        # The job's own key (from its spec): consumers refuse our events without it.
        self.signer = Key.of(signing_key) if signing_key is not None else None
        if self.signer is None:
            log.warning("the job spec carries no signing key: the services will refuse this job's events")
        self._loop: asyncio.AbstractEventLoop | None = None

    async def publish(self, message: Envelope) -> None:
        await self.producer.publish(message, signer=self.signer)

    def bind_loop(self) -> None:
        """Remembers the running loop, for :meth:`publish_from_thread`."""
        self._loop = asyncio.get_running_loop()

    def run_from_thread(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs a coroutine on the job's event loop from a training thread and waits for it."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("Publisher.bind_loop() was not called from the event loop")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def publish_from_thread(self, message: Envelope) -> None:
        self.run_from_thread(self.publish(message))

    # --- messages ---

    async def status(self, result_id: int, status: ResultStatus, datasource: DatasourceRef | None = None) -> None:
        await self.publish(
            TrainingStatusChanged(
                payload=StatusChange(
                    result_id=result_id, deployment_id=self.deployment_id, status=status, datasource=datasource
                )
            )
        )

    def epoch_message(
        self, result_id: int, epoch: int, train: Mapping[str, float], val: Mapping[str, float]
    ) -> EpochCompleted:
        return EpochCompleted(payload=EpochMetrics(result_id=result_id, epoch=epoch, train=dict(train), val=dict(val)))

    async def artifact(self, result_id: int, data: bytes, format: Literal["keras", "pt"]) -> ArtifactRef:
        """Publishes the artifact chunk by chunk, each acknowledged before the next."""
        chunks = chunk_artifact(result_id, data)
        for chunk in chunks:
            await self.publish(chunk)
        ref = ArtifactRef(format=format, size=len(data), sha256=chunks[0].payload.sha256, chunks=len(chunks))
        log.info("result %d: artifact stored: %s, %d bytes in %d chunks", result_id, format, len(data), len(chunks))
        return ref

    async def finished(
        self,
        result_id: int,
        *,
        test_metrics: Mapping[str, float],
        confusion_matrix: list[list[int]] | None,
        training_time: float,
        artifact: ArtifactRef,
        samples: SampleCounts,
        datasource: DatasourceRef | None,
    ) -> None:
        await self.publish(
            TrainingFinished(
                payload=TrainingOutcome(
                    result_id=result_id,
                    deployment_id=self.deployment_id,
                    test_metrics=dict(test_metrics),
                    confusion_matrix=confusion_matrix,
                    training_time=training_time,
                    artifact=artifact,
                    samples=samples,
                    datasource=datasource,
                )
            )
        )

    async def failed(self, result_id: int, error: str) -> None:
        await self.publish(
            TrainingFailed(payload=Failure(result_id=result_id, deployment_id=self.deployment_id, error=error))
        )
