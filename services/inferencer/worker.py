"""One inference replica, start to end: spec → artifact → model → serve until stopped.

The replica has no database credentials: its spec, its model and its
inputs travel through Kafka. The steps, each logged on one INFO line:

1. read the ``ServeModel`` with our job id from the jobs topic;
2. read the model's chunks from the artifacts topic, check the SHA-256, load
   it (GPU only where asked for and present), call it once to warm it up;
3. join the consumer group ``spec.group_id`` on the input topic (every
   replica shares it) and report ``running`` once we hold partitions;
4. serve: micro-batches (:mod:`services.inferencer.batching`) → one decode
   and one model call per batch → one output per input → commit;
5. every ``stats_interval_s``, an ``InferenceStats`` (:mod:`.stats`);
6. on a stop request (SIGTERM): finish the batches in hand, commit, leave
   the group, report ``stopped``.

A failure to start (no artifact in time, a checksum or load error, a model
that does not fit the stream) ends in ``failed`` with the reason. Bad inputs
never do: they go to the dead-letter topic with the reason, and the stream
goes on. A broker that does not take our outputs is waited for: the replica
goes back to its last commit and tries again (duplicates, no loss).

**Delivery.** At least once: offsets are committed only after every output
of the batches before them (predictions, tensors sent up, dead letters) was
acknowledged. A replica killed in between loses nothing; the next owner of
its partitions predicts those inputs again (duplicates). Batches are
pipelined (:class:`Inferencer`): batch N+1 is predicted and sent while batch
N waits for its acknowledgements (~0.5 ms each here, more across a network),
up to :data:`MAX_IN_FLIGHT` batches; their completions run in order, and the
offsets of completed batches are committed together every
:data:`COMMIT_INTERVAL_S`. Outputs are sent in input order and aiokafka keeps one
request in flight per broker, so per input partition the outputs keep the
input order. A revoked partition waits for every batch in flight to commit
(rebalance listener): a clean rebalance causes no duplicates.

**Where outputs go.** Values to predict usually have no key, and a keyed
partitioner would scatter one input partition over every output partition:
an output goes to partition ``input partition mod output partitions``, so
the outputs of one input partition stay in one output partition, in order.
The input's key and headers are copied; nothing is added to them. A
prediction is ``{"values": [...]}``: the model's output for that input,
flattened, as JSON numbers (:func:`encode_predictions`). Outputs are
appended to aiokafka record batches per partition (one future per partition
batch, not one per message).

**Distributed inference** (CONTRACTS.md): with ``upper_topic`` and ``limit``,
the model has two outputs or more: the first is the tensor for the upper
model, the last the prediction. When the prediction's largest value is below
``limit`` the tensor goes up as raw float32 bytes (C order), else the
prediction goes to the output topic.

**The model call and the event loop.** aiokafka heartbeats, fetches ahead
and collects acknowledgements in tasks of this loop. A call of a few
milliseconds (the digits model: ~0.4 ms for 1 input, ~1 ms for 512) is
cheaper inline than the ~0.7 ms a hop to a thread costs here, and delays
nothing that matters; a slower model would stall those tasks for its whole
call. So a batch runs inline while the model's recent calls took less than
:data:`INLINE_MODEL_S`, and in a dedicated thread otherwise (one thread:
model calls never overlap, user modules need not be thread-safe).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from services.inferencer.batching import MicroBatcher
from services.inferencer.model import (
    ARTIFACT_TIMEOUT_S,
    ServedModel,
    ServeFailure,
    configure_device,
    fetch_artifact,
    load_model,
)
from services.inferencer.stats import StatsWindow, predicted_classes
from shared.codecs import Decoder, decoder_for
from shared.events.inference import (
    InferenceStats,
    InferenceStatus,
    InferenceStatusChange,
    InferenceStatusChanged,
    ServeModel,
    ServeSpec,
)
from shared.jobs import JobSpecNotFound, find_job_message
from shared.kafka import Producer, make_consumer, received_from, wait_for_assignment
from shared.settings import Settings
from shared.topics import topics_for

__all__ = [
    "COMMIT_INTERVAL_S",
    "INLINE_MODEL_S",
    "MAX_IN_FLIGHT",
    "SPEC_TIMEOUT_S",
    "Inferencer",
    "SpecNotFound",
    "encode_predictions",
    "find_serve_spec",
    "run_inference",
    "serve",
]

log = logging.getLogger("kafkaml.inferencer")

SPEC_TIMEOUT_S: Final = 60.0
# Model calls that took longer than this (moving average) run in a thread, off the event loop.
INLINE_MODEL_S: Final = 0.02
# A producer record batch per output partition holds up to this much (one future each).
_RECORD_BATCH_BYTES: Final = 1024 * 1024
# How long a replica waits for partitions before saying so (it goes on waiting).
_ASSIGNMENT_WARN_S: Final = 60.0
# Batches whose outputs may await their acknowledgements at once (module docstring: pipelining).
MAX_IN_FLIGHT: Final = 4
# Completed batches are committed together at most this often: an OffsetCommit per batch of
# one or two inputs cost a fifth of a core at 500 msg/s. A kill repeats at most this much more.
COMMIT_INTERVAL_S: Final = 0.1
# Back-off between attempts while the broker does not take our outputs.
_RETRY_FIRST_S: Final = 0.2
_RETRY_MAX_S: Final = 5.0
# After a stop request, a fetch in progress gets this long to bring its batch.
_STOP_GRACE_S: Final = 1.0
_MAX_ERROR: Final = 2000
_CONSUMER_NAME: Final = "inferencer"

Record = Any  # aiokafka's ConsumerRecord[bytes, bytes] (aiokafka ships no type information)
Headers = list[tuple[str, bytes]]


class SpecNotFound(Exception):
    """No ``ServeModel`` with this job id: there is no inference to report anything about."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


# --- the spec -----------------------------------------------------------------------


async def find_serve_spec(
    settings: Settings, job_id: str, timeout_s: float = SPEC_TIMEOUT_S, stop: asyncio.Event | None = None
) -> ServeSpec | None:
    """The ``ServeModel`` spec with this id from the jobs topic; None when ``stop`` was set
    first; SpecNotFound after ``timeout_s``."""
    try:
        found = await find_job_message(settings, job_id, ServeModel, timeout_s=timeout_s, stop=stop)
    except JobSpecNotFound as exc:
        raise SpecNotFound(exc.detail) from None
    return found.payload if found is not None else None


# --- events ---------------------------------------------------------------------------


class _Events:
    """What a replica tells the rest of the system: its status and its statistics."""

    def __init__(self, producer: Producer, settings: Settings, spec: ServeSpec, replica: str) -> None:
        self.producer = producer
        self.topic = topics_for(settings).events
        self.spec = spec
        self.replica = replica

    async def status(self, status: InferenceStatus, error: str | None = None) -> None:
        change = InferenceStatusChange(
            inference_id=self.spec.inference_id,
            status=status,
            replica=self.replica,
            error=None if error is None else _truncate(error),
        )
        await self.producer.publish(self.topic, InferenceStatusChanged(payload=change))
        log.info("status %s%s", status, f": {error}" if error else "")

    async def stats(self, window: StatsWindow, lag: int | None) -> None:
        stats = window.take(self.spec.inference_id, self.replica, lag)
        await self.producer.publish(self.topic, InferenceStats(payload=stats))

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        log.info(
            "stats: %d msgs in %.1f s (%.1f/s), latency p50 %s p95 %s p99 %s ms, errors %d, lag %s, predicted %s",
            stats.messages,
            stats.window_s,
            stats.throughput,
            ms(stats.latency_p50_ms),
            ms(stats.latency_p95_ms),
            ms(stats.latency_p99_ms),
            stats.errors,
            "-" if stats.lag is None else stats.lag,
            stats.predicted or "-",
        )


# --- serving ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Output:
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: Headers


# Significant digits that give back the exact value of a float of this size (float16, float32).
_ROUND_TRIP_DIGITS: Final = {2: 5, 4: 9}


def encode_predictions(outputs: np.ndarray[Any, Any]) -> list[bytes]:
    """``{"values": [...]}`` per input: its row of the model's output, flattened, as JSON numbers.

    float16/float32 outputs are written with the digits that round-trip their
    type (``%.9g`` for float32: ``0.0871744305``, ``1`` for 1.0), one ``%``
    format per row: 1.4 µs a row of 10 where ``json.dumps`` of the float64
    values takes 6 µs (the largest cost per message at full speed). Other
    types go through ``json.dumps`` (shortest float64 repr). A value that is
    not finite becomes ``null``: JSON has no NaN or Infinity.
    """
    rows = outputs.reshape(len(outputs), -1)
    finite = bool(np.isfinite(rows).all()) if rows.dtype.kind == "f" else True
    digits = _ROUND_TRIP_DIGITS.get(rows.dtype.itemsize) if rows.dtype.kind == "f" else None
    if finite and digits is not None:
        row_format = b'{"values": [' + b", ".join([b"%%.%dg" % digits] * rows.shape[1]) + b"]}"
        return [row_format % tuple(row) for row in rows.tolist()]
    lists: list[Any] = rows.astype(np.float64).tolist()
    if not finite:
        lists = [[v if math.isfinite(v) else None for v in row] for row in lists]
    dumps = json.dumps
    return [b'{"values": ' + dumps(row).encode() + b"}" for row in lists]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no type information
    def __init__(self, inferencer: Inferencer) -> None:
        self.inferencer = inferencer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Every batch in flight is acknowledged and committed before another member gets
        # the partitions: a rebalance causes no duplicates.
        async with self.inferencer.batch_lock:
            await self.inferencer.drain()
        if revoked:
            log.info("partitions revoked: %s", _partitions(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _partitions(assigned) or "none")


def _partitions(tps: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(tps))


@dataclass
class _Flight:
    """A batch whose outputs are on their way: what its completion needs."""

    records: list[Record]
    acks: list[asyncio.Future[Any]]
    sent: list[int]  # indices (in the batch) of the records whose output went out
    classes: np.ndarray[Any, Any] | None
    errors: int


class Inferencer:
    """Serves a loaded model on the input topic until ``stop`` is set.

    Batches are pipelined: while batch N's outputs wait for their
    acknowledgements, batch N+1 is fetched, predicted and sent. Each batch's
    completion (acknowledgements, then statistics and commit) waits for the
    previous one, so offsets are committed in order and only once every output
    before them landed; at most :data:`MAX_IN_FLIGHT` batches are in flight.
    """

    def __init__(
        self,
        settings: Settings,
        spec: ServeSpec,
        replica: str,
        producer: Producer,
        model: ServedModel,
        decoder: Decoder,
        *,
        distributed: bool,
        events: _Events,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.replica = replica
        self.producer = producer
        self.model = model
        self.decoder = decoder
        self.distributed = distributed
        self.events = events
        self.dead_letter_topic = topics_for(settings).dead_letters
        self.window = StatsWindow()
        # Held while a batch is dispatched, so that a revocation sees every batch in flight.
        self.batch_lock = asyncio.Lock()
        self.model_seconds = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafkaml-model")
        self._partition_counts: dict[str, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._in_flight: collections.deque[asyncio.Task[None]] = collections.deque()
        # Offsets of completed batches, committed every COMMIT_INTERVAL_S (and on stop or revocation).
        self._to_commit: dict[TopicPartition, int] = {}
        self._commit_due = 0.0
        self._consumer: AIOKafkaConsumer | None = None

    # --- the loop ---

    async def run(self, stop: asyncio.Event, on_running: Callable[[], Awaitable[None]]) -> None:
        spec = self.spec
        consumer = make_consumer(
            self.settings,
            group_id=spec.group_id,
            client_id=f"kafkaml-inferencer-{spec.inference_id}-{self.replica}",
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe([spec.input_topic], listener=_Rebalance(self))
        log.info("joining group %s on %s", spec.group_id, spec.input_topic)
        alive = AliveFile.from_env()

        def fetch(timeout_ms: int, max_records: int) -> Any:
            alive.touch()  # every poll, busy or idle: the loop goes on (Kubernetes' liveness check)
            return consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)

        batcher: MicroBatcher[Record] = MicroBatcher(
            fetch,
            max_batch=spec.max_batch,
            max_wait_s=spec.max_wait_ms / 1000,
        )
        # The fetch loop below must run for the join to complete; "running" is said once we hold partitions.
        announce = asyncio.create_task(self._announce(consumer, on_running))
        reporter = asyncio.create_task(self._report(stop))
        stopping = asyncio.create_task(stop.wait())
        delay = _RETRY_FIRST_S
        try:
            while not stop.is_set():
                try:
                    batch = await self._next_batch(batcher, stop, stopping)
                    if batch:
                        # Not held while fetching: during a rebalance getmany waits for the new
                        # assignment, which waits for the revocation listener, which waits for this.
                        async with self.batch_lock:
                            await self._dispatch(batch)
                    await self._settle(block=len(self._in_flight) >= MAX_IN_FLIGHT)
                    if self._to_commit and time.monotonic() >= self._commit_due:
                        await self._commit_pending()
                    delay = _RETRY_FIRST_S
                except KafkaError as exc:
                    # The broker did not take our outputs: start again from the last commit.
                    log.warning("producing failed (%s: %s): resuming from the last commit", type(exc).__name__, exc)
                    await self._rewind()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
                if announce.done() and announce.exception() is not None:
                    raise announce.exception()  # type: ignore[misc]  # checked just above
            async with self.batch_lock:
                await self.drain()
            log.info("stop requested: every batch in flight was acknowledged and committed; leaving the group")
        finally:
            for task in (announce, reporter, stopping, *self._in_flight):
                task.cancel()
            await asyncio.gather(announce, reporter, stopping, *self._in_flight, return_exceptions=True)
            await consumer.stop()  # leaves the group: the others rebalance at once, no session timeout
            self._executor.shutdown(wait=False)
        await self.events.stats(self.window, None)

    @staticmethod
    async def _next_batch(
        batcher: MicroBatcher[Record], stop: asyncio.Event, stopping: asyncio.Task[Any]
    ) -> list[Record]:
        """The next batch, or nothing once a stop is asked and no batch comes promptly.

        A fetch during a rebalance waits for the new assignment (seconds on the embedded
        broker, a session timeout after a killed member): a stop must not wait for it.
        Records of a cancelled fetch were not committed; their partition's next owner
        predicts them.
        """
        fetch = asyncio.ensure_future(batcher.next_batch(stop))
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not fetch.done():
            await asyncio.wait({fetch}, timeout=_STOP_GRACE_S)
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
            return []
        return fetch.result()

    async def _announce(self, consumer: AIOKafkaConsumer, on_running: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await wait_for_assignment(consumer, _ASSIGNMENT_WARN_S)
                break
            except TimeoutError:
                log.warning(
                    "no partitions of %s after %g s (does the topic exist? more replicas than partitions?)",
                    self.spec.input_topic,
                    _ASSIGNMENT_WARN_S,
                )
        log.info("holding partitions %s", _partitions(consumer.assignment()))
        await on_running()

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.spec.stats_interval_s)
            try:
                await self.events.stats(self.window, self.lag())
            except KafkaError as exc:  # statistics are not worth stopping the stream for
                log.warning("could not publish statistics: %s", exc)

    def lag(self) -> int | None:
        """Records behind the high watermark the broker last reported, over our partitions.

        Best effort: the embedded broker's end offsets are wrong when records arrive
        in batches (ENVIRONMENT.md); a partition we have not consumed from yet counts
        as unknown. None when nothing is known.
        """
        consumer = self._consumer
        if consumer is None:
            return None
        total: int | None = None
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self._positions.get(tp)
            if highwater is None or position is None:
                continue
            total = (total or 0) + max(0, int(highwater) - position)
        return total

    # --- batches in flight ---

    async def _settle(self, *, block: bool) -> None:
        """Forgets the completed batches (raising a failed one's error); with ``block``, waits for the oldest."""
        while self._in_flight and (self._in_flight[0].done() or block):
            oldest = self._in_flight[0]
            try:
                await oldest
            finally:
                # The loop and a revocation may both wait for the oldest batch: it leaves once.
                if self._in_flight and self._in_flight[0] is oldest:
                    self._in_flight.popleft()
            block = False

    async def drain(self) -> None:
        """Waits until every batch in flight is acknowledged, then commits (raises a failure)."""
        while self._in_flight:
            await self._settle(block=True)
        await self._commit_pending()

    async def _rewind(self) -> None:
        """After a failed batch: the batches before it are committed, the consumer goes back to the commit."""
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        consumer = self._consumer
        assert consumer is not None
        with contextlib.suppress(KafkaError):
            await self._commit_pending()
        for tp in consumer.assignment():
            try:
                offset = await consumer.committed(tp)
            except KafkaError as exc:
                log.warning("could not read the committed offset of %s:%d: %s", tp.topic, tp.partition, exc)
                continue
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    # --- one batch ---

    async def _dispatch(self, records: list[Record]) -> None:
        """Decodes, predicts and sends a batch; its completion runs as a task after the previous one's."""
        decoded = self.decoder.decode([r.value for r in records])
        failures: list[tuple[int, str]] = [(i, f"undecodable: {reason}") for i, reason in decoded.bad]
        good = decoded.good_indices if decoded.bad else list(range(len(records)))
        outputs: list[_Output] = []
        sent: list[int] = []
        classes: np.ndarray[Any, Any] | None = None
        if good:
            kept, arrays, model_failures = await self._predict(decoded.x)
            failures.extend((good[k], reason) for k, reason in model_failures)
            if kept:
                classes = await self._route(records, [good[k] for k in kept], arrays, outputs, sent)
        acks = await self._send(outputs)
        for index, reason in failures:
            dead = self.producer.dead_letter(
                self.dead_letter_topic, received_from(records[index]), reason, consumer=_CONSUMER_NAME
            )
            acks.append(asyncio.ensure_future(dead))
        flight = _Flight(records, acks, sent, classes, len(failures))
        previous = self._in_flight[-1] if self._in_flight else None
        self._in_flight.append(asyncio.create_task(self._complete(flight, previous)))

    async def _complete(self, flight: _Flight, previous: asyncio.Task[None] | None) -> None:
        try:
            await asyncio.gather(*flight.acks)
        except BaseException:
            for ack in flight.acks:  # the dead-letter sends still running
                ack.cancel()
            raise
        acked_ms = time.time() * 1000
        if previous is not None:
            await previous  # in order: a failed batch before this one is this one's failure too
        records = flight.records
        timestamps = np.fromiter((records[i].timestamp for i in flight.sent), dtype=np.float64, count=len(flight.sent))
        self.window.add(len(flight.sent), acked_ms - timestamps[timestamps > 0], flight.classes)
        self.window.add_errors(flight.errors)
        for record in records:  # in order per partition: the last one wins
            self._to_commit[TopicPartition(record.topic, record.partition)] = record.offset + 1

    async def _predict(
        self, x: np.ndarray[Any, Any]
    ) -> tuple[list[int], list[np.ndarray[Any, Any]], list[tuple[int, str]]]:
        """(positions in ``x`` that got outputs, the outputs, failed positions with the reason)."""
        try:
            prepared = self.model.prepare(x)
        except ValueError as exc:  # a stream whose samples do not fit the model: each input is bad
            return [], [], [(i, str(exc)) for i in range(len(x))]
        try:
            return list(range(len(x))), await self._call(self.model.predict, prepared), []
        except Exception as exc:
            if len(x) == 1:
                return [], [], [(0, f"the model failed on this input: {type(exc).__name__}: {exc}")]
            log.warning("the model failed on a batch of %d (%s): retrying input by input", len(x), exc)

        def one_by_one() -> tuple[list[int], list[np.ndarray[Any, Any]], list[tuple[int, str]]]:
            kept: list[int] = []
            rows: list[list[np.ndarray[Any, Any]]] = []
            failed: list[tuple[int, str]] = []
            for i in range(len(prepared)):
                try:
                    rows.append(self.model.predict(prepared[i : i + 1]))
                    kept.append(i)
                except Exception as exc:
                    failed.append((i, f"the model failed on this input: {type(exc).__name__}: {exc}"))
            arrays = [np.concatenate(parts) for parts in zip(*rows, strict=True)] if rows else []
            return kept, arrays, failed

        return await asyncio.get_running_loop().run_in_executor(self._executor, one_by_one)

    async def _call(
        self, function: Callable[[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]], x: np.ndarray[Any, Any]
    ) -> list[np.ndarray[Any, Any]]:
        """One model call: inline while calls are short, in the model thread otherwise (module docstring)."""
        started = time.perf_counter()
        if self.model_seconds < INLINE_MODEL_S:
            result = function(x)
        else:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, function, x)
        # A moving average: one slow call (a retrace, a page fault) does not move the model off the loop.
        self.model_seconds = 0.8 * self.model_seconds + 0.2 * (time.perf_counter() - started)
        return result

    async def _route(
        self,
        records: list[Record],
        indices: list[int],
        arrays: list[np.ndarray[Any, Any]],
        outputs: list[_Output],
        sent: list[int],
    ) -> np.ndarray[Any, Any] | None:
        """Appends each input's output (prediction, or tensor sent up) in input order; the predicted classes."""
        prediction = arrays[-1]
        count = len(indices)
        if len(prediction) != count:
            raise ServeFailure(f"the model returned {len(prediction)} outputs for {count} inputs")
        up: np.ndarray[Any, Any] = np.zeros(count, dtype=bool)
        if self.distributed:
            if len(arrays) < 2:
                raise ServeFailure(
                    "a distributed inference needs a model with two outputs (to the upper model, prediction); "
                    f"this one has {len(arrays)}"
                )
            limit = float(self.spec.limit or 0.0)
            up = prediction.reshape(count, -1).max(axis=1) < limit
        spec = self.spec
        output_partitions = await self._partitions_of(spec.output_topic)
        predictions = iter(encode_predictions(prediction[~up]))
        tensors: Any = iter(())
        upper_partitions = 1
        if up.any():
            assert spec.upper_topic is not None  # distributed
            upper_partitions = await self._partitions_of(spec.upper_topic)
            # Raw float32 in C order: the upper model's RAW input.
            tensors = iter(np.ascontiguousarray(arrays[0][up], dtype=np.float32))
        for index, goes_up in zip(indices, up.tolist(), strict=True):
            record = records[index]
            if goes_up:
                assert spec.upper_topic is not None
                topic, partitions, value = spec.upper_topic, upper_partitions, next(tensors).tobytes()
            else:
                topic, partitions, value = spec.output_topic, output_partitions, next(predictions)
            # aiokafka's record batches take headers as a list only.
            outputs.append(_Output(topic, record.partition % partitions, record.key, value, list(record.headers)))
            sent.append(index)
        return predicted_classes(prediction[~up])

    async def _partitions_of(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            # The orchestrator creates the output topics; this also waits for their metadata.
            count = len(await self.producer._producer.partitions_for(topic))
            self._partition_counts[topic] = count
        return count

    async def _send(self, outputs: list[_Output]) -> list[asyncio.Future[Any]]:
        """Appends the outputs to one record batch per partition (more when one fills up) and submits them."""
        producer = self.producer._producer  # the helper's aiokafka producer: batches need its batch API
        batches: list[tuple[str, int, Any]] = []
        open_batches: dict[tuple[str, int], Any] = {}
        for output in outputs:
            place = (output.topic, output.partition)
            builder = open_batches.get(place)
            if builder is None:
                builder = open_batches[place] = producer.create_batch()
                batches.append((output.topic, output.partition, builder))
            if builder.append(timestamp=None, key=output.key, value=output.value, headers=output.headers) is None:
                builder = open_batches[place] = producer.create_batch()
                batches.append((output.topic, output.partition, builder))
                builder.append(timestamp=None, key=output.key, value=output.value, headers=output.headers)
        # Submitted in creation order: one partition's batches stay in order (aiokafka sends
        # one batch per partition at a time).
        return [await producer.send_batch(builder, topic, partition=partition) for topic, partition, builder in batches]

    async def _commit_pending(self) -> None:
        self._commit_due = time.monotonic() + COMMIT_INTERVAL_S
        if not self._to_commit:
            return
        offsets, self._to_commit = self._to_commit, {}
        self._positions.update(offsets)
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        held = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if len(held) < len(offsets):
            log.info("not committing %d revoked partition(s): their next owner repeats them", len(offsets) - len(held))
        if not held:
            return
        try:
            await consumer.commit(held)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the partitions' next owner predicts these inputs again.
            log.warning("commit failed after a rebalance (%s): those inputs will be predicted again", exc)


# --- a replica ----------------------------------------------------------------------------


def _decoder(spec: ServeSpec, model: ServedModel) -> Decoder:
    config = dict(spec.input_config)
    shape = model.fixed_shape()
    if spec.input_format == "JSON" and not config.get("data_reshape") and shape is not None:
        # Without it the first sample would fix the stream's shape, right or wrong.
        config["data_reshape"] = " ".join(str(d) for d in shape) or "1"
    try:
        return decoder_for(spec.input_format, config)
    except ValueError as exc:
        raise ServeFailure(f"input_config does not describe {spec.input_format} values: {exc}") from None


def _warm_up(model: ServedModel, decoder: Decoder) -> tuple[int | None, float]:
    """Calls the model on one zero sample (traces it, checks it takes the stream's samples).

    (number of outputs, seconds of a warm call); no outputs count when the sample shape is
    not known before data arrives (Avro, JSON without a shape).
    """
    shape = decoder.sample_shape
    if shape is None:
        shape = model.fixed_shape()
    if shape is None:
        return None, 0.0
    sample = np.zeros((1, *shape), dtype=np.float32)
    try:
        model.predict(model.prepare(sample))
        started = time.perf_counter()
        outputs = model.predict(model.prepare(sample))
    except Exception as exc:
        raise ServeFailure(
            f"the model does not take the stream's samples ({decoder.describe()}): {type(exc).__name__}: {exc}"
        ) from None
    return len(outputs), time.perf_counter() - started


async def serve(
    settings: Settings,
    spec: ServeSpec,
    replica: str,
    *,
    stop: asyncio.Event,
    artifact_timeout_s: float = ARTIFACT_TIMEOUT_S,
) -> InferenceStatus:
    """Serves the spec until ``stop`` is set; the final status ("stopped" or "failed"), also published."""
    # No linger: a micro-batch's outputs are whole record batches already, waiting adds latency only.
    async with Producer(settings, max_batch_size=_RECORD_BATCH_BYTES, linger_ms=0) as producer:
        events = _Events(producer, settings, spec, replica)
        try:
            await _serve(settings, spec, replica, producer, events, stop, artifact_timeout_s)
        except ServeFailure as failure:
            reason = failure.message
        except Exception as exc:  # a bug of ours, or the broker gone: still an answer for the user
            log.exception("inference %d failed", spec.inference_id)
            reason = f"the inferencer failed: {type(exc).__name__}: {exc}"
        else:
            await events.status("stopped")
            return "stopped"
        log.error("inference %d failed: %s", spec.inference_id, reason)
        await events.status("failed", reason)
        return "failed"


async def _serve(
    settings: Settings,
    spec: ServeSpec,
    replica: str,
    producer: Producer,
    events: _Events,
    stop: asyncio.Event,
    artifact_timeout_s: float,
) -> None:
    # Importing the framework takes seconds: done while the artifact is read.
    device_task = asyncio.create_task(asyncio.to_thread(configure_device, spec.framework, spec.gpus, _threads()))
    try:
        artifact = await fetch_artifact(settings, spec, artifact_timeout_s, stop)
    finally:
        device = await device_task
    if artifact is None:
        return
    model = await asyncio.to_thread(load_model, spec, artifact, device)
    decoder = _decoder(spec, model)
    outputs, seconds = await asyncio.to_thread(_warm_up, model, decoder)
    log.info("model loaded: %s; inputs %s %s", model.describe(), spec.input_format, decoder.describe())
    distributed = spec.upper_topic is not None and spec.limit is not None
    if (spec.upper_topic is None) != (spec.limit is None):
        log.warning("upper_topic and limit go together: without both, every prediction goes to the output topic")
    if distributed:
        if outputs is not None and outputs < 2:
            raise ServeFailure(
                "a distributed inference needs a model with two outputs (to the upper model, prediction); "
                f"this one has {outputs}"
            )
        log.info("distributed: below %g the first output goes up to %s", spec.limit, spec.upper_topic)
    if stop.is_set():
        return
    inferencer = Inferencer(settings, spec, replica, producer, model, decoder, distributed=distributed, events=events)
    inferencer.model_seconds = seconds
    await inferencer.run(stop, lambda: events.status("running"))


async def run_inference(
    settings: Settings,
    job_id: str,
    replica: str,
    *,
    stop: asyncio.Event,
    spec_timeout_s: float = SPEC_TIMEOUT_S,
    artifact_timeout_s: float = ARTIFACT_TIMEOUT_S,
) -> InferenceStatus:
    """Finds the spec with this job id and serves it; the final status. Raises SpecNotFound."""
    spec = await find_serve_spec(settings, job_id, spec_timeout_s, stop)
    if spec is None:
        log.info("stopped before the spec was found")
        return "stopped"
    log.info(
        "spec found: job %s, inference %d, result %d, %s, %s → %s, group %s, replica %s",
        spec.job_id,
        spec.inference_id,
        spec.result_id,
        spec.framework,
        spec.input_topic,
        spec.output_topic,
        spec.group_id,
        replica,
    )
    return await serve(settings, spec, replica, stop=stop, artifact_timeout_s=artifact_timeout_s)


class AliveFile:
    """A file touched by the consume loop; a liveness check reads its age ("last message
    processed or polled", not "process alive"). Off unless ``KAFKAML_ALIVE_FILE`` names it."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.last = 0.0

    @classmethod
    def from_env(cls) -> AliveFile:
        return cls(os.environ.get("KAFKAML_ALIVE_FILE"))

    def touch(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self.last < 1.0:  # at most once a second
            return
        self.last = now
        with open(self.path, "a"):
            os.utime(self.path)
