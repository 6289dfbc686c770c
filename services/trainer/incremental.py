"""Incremental (continuous) training: an unbounded stream, window by window (docs/continuous-learning.md).

Per window, in this order: the window is evaluated by the model as it is (the prequential
metrics: test, then train), trained on (``fit`` epochs, default 1, ``validation_rate`` held
out), and the model is published as chunks carrying the trainer's state: a new version
(``ModelVersionPublished`` after its chunks) when the monitored metric improved by more than
``improvement`` in the direction ``change`` since the last version (every window when no metric
is monitored), else a checkpoint. Then ``WindowCompleted``, then the consumer group's offsets
are committed. Every publish is acknowledged before the next, so the chunks of a window are on
the artifacts topic before anything says the window is done.

A restarted trainer (same spec, same job key) reads its result's partition of the artifacts
topic back from its end, keeps only chunks signed with its own key, restores the model from the newest complete
state and goes on after that window's end offsets: window numbers continue, no window is
trained twice, none is skipped. The stream ending (``stream_timeout_s`` without a record)
finishes the result with the last version as its artifact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from services.trainer.data import FoundControl
from services.trainer.data.errors import DataError
from services.trainer.data.split import SPLIT_SEED, split_indices
from services.trainer.data.window import StreamReader, Window, WindowRule, stream_topic
from services.trainer.learners import Learner, make_learner
from services.trainer.publishing import Publisher
from shared.artifacts import ResultPartition, chunk_artifact, chunk_bytes, sha256_of
from shared.codecs import Decoder, decoder_for
from shared.errors import Undecodable, WorkloadFailed
from shared.events.signing import Forged, Key, Keyring
from shared.events.training import (
    ArtifactChunk,
    ArtifactRef,
    IncrementalParams,
    IncrementalState,
    JobSpec,
    SampleCounts,
    TrainingPhase,
)
from shared.events.versions import ModelVersion, ModelVersionPublished, WindowCompleted, WindowMetrics
from shared.settings import Settings

__all__ = ["DEFAULT_PARAMS", "improved", "train_incremental", "window_split"]

log = logging.getLogger("kafkaml.trainer")

# A control message that says ``incremental: true`` for a deployment that gave no parameters:
# upstream's defaults (a stream timeout of 60 s, an improvement of 0.1, no monitored metric: a
# version per window), with windows of 10 s, the poll timeout upstream's Kafka reader batches by.
DEFAULT_PARAMS: Final = IncrementalParams(window_s=10.0, stream_timeout_s=60.0, improvement=0.1)

Progress = Callable[[TrainingPhase, str], Awaitable[None]]


def improved(value: float | None, reference: float | None, change: str, improvement: float) -> bool:
    """Whether a metric moved by more than ``improvement`` in the direction ``change`` ("up"/"down")
    since ``reference`` (the value at the last version; None: no version yet, so it is one)."""
    if reference is None:
        return True
    if value is None or not np.isfinite(value):
        return False
    delta = value - reference if change == "up" else reference - value
    return bool(delta > improvement)


def window_split(n: int, validation_rate: float, window: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Indices of the window's samples to train on and to hold out: a seeded shuffle per window."""
    train, validation, _ = split_indices(n, validation_rate, 0.0, SPLIT_SEED + window)
    return np.sort(train), np.sort(validation)


@dataclass
class Checkpoint:
    state: IncrementalState
    data: bytes


async def find_checkpoint(settings: Settings, spec: JobSpec, result_id: int) -> Checkpoint | None:
    """The newest complete state this job saved for ``result_id``, read back from the end of the
    one partition its key maps to (a state's chunks all follow the older states' chunks)."""
    if spec.signing_key is None:
        log.warning("the spec has no signing key: no checkpoint can be verified, training from the start")
        return None
    keyring = Keyring((), own=Key.of(spec.signing_key))
    pieces: dict[tuple[int, str], dict[int, Any]] = {}
    found: list[Checkpoint] = []

    def take(record: Any) -> bool:
        try:
            message = keyring.open(
                record.value,
                list(record.headers or ()),
                lambda m: isinstance(m, ArtifactChunk) and m.payload.result_id == result_id,
            )
        except Undecodable:
            return False  # not a message of ours (the metrics service dead-letters it)
        except Forged as exc:
            log.warning("artifacts offset %d: a chunk not signed by this job, ignored (%s)", record.offset, exc)
            return False
        if not isinstance(message, ArtifactChunk) or message.payload.state is None:
            return False
        chunk = message.payload
        assert chunk.state is not None
        chunks = pieces.setdefault((chunk.state.window, chunk.sha256), {})
        chunks[chunk.index] = chunk
        checkpoint = _complete(chunks)
        if checkpoint is not None:
            found.append(checkpoint)
        return False  # a span can hold newer states after this one: read it to its end

    async with ResultPartition(settings, result_id, max_partition_fetch_bytes=8 * 2**20) as reader:
        await reader.newest_first(take, enough=lambda: bool(found))
    return max(found, key=lambda checkpoint: checkpoint.state.window, default=None)


def _complete(chunks: dict[int, Any]) -> Checkpoint | None:
    """The checkpoint these chunks make once all are there and match their checksum."""
    first = next(iter(chunks.values()))
    if sorted(chunks) != list(range(first.count)):
        return None
    data = b"".join(chunk_bytes(chunks[i]) for i in range(first.count))
    if sha256_of(data) != first.sha256:
        log.warning("the checkpoint of window %d does not match its checksum: skipped", first.state.window)
        return None
    return Checkpoint(chunks[0].state, data)


@dataclass
class _Run:
    """What carries over from window to window (and across a restart, through the state)."""

    window: int = 0
    version: int | None = None
    version_artifact: ArtifactRef | None = None
    reference: float | None = None
    train: int = 0
    validation: int = 0
    bad: int = 0
    training_time: float = 0.0
    last_metrics: dict[str, float | None] | None = None

    @classmethod
    def of(cls, state: IncrementalState) -> _Run:
        return cls(
            window=state.window, version=state.version, version_artifact=state.version_artifact,
            reference=state.reference, train=state.samples.train, validation=state.samples.validation,
            bad=state.samples.bad, training_time=state.training_time,
            last_metrics=state.completed.prequential if state.completed else None,
        )  # fmt: skip

    def samples(self) -> SampleCounts:
        return SampleCounts(train=self.train, validation=self.validation, test=0, bad=self.bad)


def _decode(decoder: Decoder, window: Window) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int]:
    decoded = decoder.decode(window.values, window.keys)
    if decoded.bad:
        log.warning("%d record(s) of the window could not be decoded (first: %s)", len(decoded.bad), decoded.bad[0][1])
    if decoded.y is None:  # keys were given: a decoder always finds labels
        raise DataError("the stream's records carry no labels: an incremental training needs them")
    return decoded.x, decoded.y, len(decoded.bad)


def _work(
    learner: Learner, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], validation_rate: float, window: int
) -> tuple[dict[str, float], dict[str, float], dict[str, float], bytes, int, int]:
    """Test, then train, then save: the blocking part of one window (in a thread)."""
    if len(x) == 0:
        return {}, {}, {}, learner.export(), 0, 0
    prequential = learner.evaluate(x, y)
    train_idx, val_idx = window_split(len(x), validation_rate, window)
    train, val = learner.train(x[train_idx], y[train_idx], x[val_idx], y[val_idx])
    return prequential, train, val, learner.export(), len(train_idx), len(val_idx)


async def train_incremental(
    settings: Settings,
    spec: JobSpec,
    publisher: Publisher,
    found: FoundControl,
    params: IncrementalParams,
    progress: Progress,
) -> None:
    """Trains until the stream ends (then TrainingFinished) or the process is stopped."""
    if len(spec.models) != 1:
        raise WorkloadFailed("a distributed chain cannot train incrementally: deploy its models on their own")
    result_id = spec.models[0].result_id
    message = found.message
    topic, starts = stream_topic(message.topic)
    decoder = decoder_for(message.input_format, message.input_config)
    checkpoint = await find_checkpoint(settings, spec, result_id)
    run = _Run.of(checkpoint.state) if checkpoint else _Run()
    if checkpoint is not None:
        if checkpoint.state.topic != topic:
            raise WorkloadFailed(
                f"the checkpoint of window {checkpoint.state.window} reads topic {checkpoint.state.topic!r}, "
                f"the control message {topic!r}: deploy again to train on another stream"
            )
        log.info("resuming after window %d (version %s) at %s", run.window, run.version, checkpoint.state.next_offsets)
    learner = await asyncio.to_thread(make_learner, spec, checkpoint.data if checkpoint else None)
    reader = StreamReader(settings, topic, spec.job_id)
    resume_at = checkpoint.state.next_offsets if checkpoint else {}
    await reader.start({**starts, **resume_at}, timeout_s=spec.data_timeout_s)
    try:
        if checkpoint is not None:
            await _settle(publisher, reader, checkpoint.state)
        await publisher.status(result_id, "training", found.datasource())
        rule = WindowRule(params.window_samples, params.window_s)
        while True:
            number = run.window + 1
            await progress("waiting_data", f"window {number}: waiting for data on {topic}")
            window = await reader.read(rule, params.stream_timeout_s)
            if len(window) == 0:
                break
            await _window(
                spec, publisher, reader, learner, decoder, run, window, number, params, message.validation_rate,
                progress,
            )  # fmt: skip
            if reader.idle:
                break
    finally:
        await reader.stop()
    if run.version_artifact is None or run.version is None:
        raise WorkloadFailed(
            f"no record arrived on {topic} within stream_timeout_s={params.stream_timeout_s:g} s: nothing was trained"
        )
    await publisher.finished(
        result_id,
        test_metrics={k: v for k, v in (run.last_metrics or {}).items() if v is not None},
        confusion_matrix=None,
        training_time=run.training_time,
        artifact=run.version_artifact,
        samples=run.samples(),
        datasource=found.datasource(),
    )
    log.info("result %d finished after window %d: version %d", result_id, run.window, run.version)


async def _settle(publisher: Publisher, reader: StreamReader, state: IncrementalState) -> None:
    """After a restart: when the group's offsets are behind the checkpoint, the crash came after the
    window's chunks but maybe before its events were acknowledged: they are published again (the
    consumers keep one per window and version), then the offsets committed."""
    committed = await reader.committed()
    if all(committed.get(p) == o for p, o in state.next_offsets.items()):
        return
    log.info("window %d was saved but not committed: publishing its events again", state.window)
    completed = state.completed
    if completed is not None and completed.version is not None and state.version_artifact is not None:
        ref = state.version_artifact
        await publisher.publish(
            ModelVersionPublished(
                payload=ModelVersion(
                    result_id=completed.result_id, version=completed.version, sha256=ref.sha256, size=ref.size,
                    format=ref.format, metrics=completed.prequential, window=completed.window,
                )
            )
        )  # fmt: skip
    if completed is not None:
        await publisher.publish(WindowCompleted(payload=completed))
    await reader.commit(state.next_offsets)


async def _window(
    spec: JobSpec,
    publisher: Publisher,
    reader: StreamReader,
    learner: Learner,
    decoder: Decoder,
    run: _Run,
    window: Window,
    number: int,
    params: IncrementalParams,
    validation_rate: float,
    progress: Progress,
) -> None:
    started = time.monotonic()
    result_id = spec.models[0].result_id
    x, y, bad = _decode(decoder, window)
    await progress("training", f"window {number}: {len(x):,} samples")
    prequential, train, val, data, trained, held_out = await asyncio.to_thread(
        _work, learner, x, y, validation_rate, number
    )
    metric = params.monitoring_metric
    if metric is not None and prequential and metric not in prequential:
        raise WorkloadFailed(
            f"monitoring_metric {metric!r} is not among the model's metrics ({', '.join(sorted(prequential))})"
        )
    value = prequential.get(metric) if metric is not None else None
    is_version = bool(prequential) and (
        metric is None or improved(value, run.reference, params.change, params.improvement)
    )
    chunks = chunk_artifact(result_id, data)
    ref = ArtifactRef(format=learner.format, size=len(data), sha256=chunks[0].payload.sha256, chunks=len(chunks))
    run.window = number
    run.train += trained
    run.validation += held_out
    run.bad += bad
    run.training_time += time.monotonic() - started
    if prequential:
        run.last_metrics = dict(prequential)
    if is_version:
        run.version = (run.version or 0) + 1
        run.version_artifact = ref
        run.reference = value
    completed = WindowMetrics(
        result_id=result_id, deployment_id=spec.deployment_id, window=number, samples=len(x),
        prequential=dict(prequential), train=dict(train), val=dict(val), topic=reader.topic,
        offsets=window.spans(), version=run.version if is_version else None,
    )  # fmt: skip
    state = IncrementalState(
        window=number, topic=reader.topic, next_offsets=dict(reader.positions), version=run.version,
        version_artifact=run.version_artifact, reference=run.reference, completed=completed,
        samples=run.samples(), training_time=run.training_time,
    )  # fmt: skip
    update: dict[str, Any] = {"state": state, "purpose": "result" if is_version else "checkpoint"}
    if is_version:
        update["version"] = run.version
    for chunk in chunks:
        await publisher.publish(ArtifactChunk(payload=chunk.payload.model_copy(update=update)))
    if is_version and run.version is not None:
        await publisher.publish(
            ModelVersionPublished(
                payload=ModelVersion(
                    result_id=result_id, version=run.version, sha256=ref.sha256, size=ref.size, format=ref.format,
                    metrics=dict(prequential), window=number,
                )
            )
        )  # fmt: skip
    await publisher.publish(WindowCompleted(payload=completed))
    await reader.commit(state.next_offsets)
    log.info(
        "window %d: %d samples (%d bad), prequential %s, train %s, val %s%s",
        number, len(x), bad, prequential, train, val, f", version {run.version}" if is_version else "",
    )  # fmt: skip
