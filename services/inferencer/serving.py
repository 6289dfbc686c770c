"""The serving loop: micro-batches from the input topic → one model call each → outputs → commit.

**Delivery.** At least once: offsets are committed only after every output
of the batches before them (predictions, tensors sent up, dead letters) was
acknowledged. A replica killed in between loses nothing; the next owner of
its partitions predicts those inputs again (duplicates). Batches are
pipelined: batch N+1 is predicted and sent while batch N waits for its
acknowledgements, up to :data:`MAX_IN_FLIGHT` batches; their completions run
in order, and the offsets of completed batches are committed together every
:data:`COMMIT_INTERVAL_S`. Outputs are sent in input order and aiokafka keeps
one request in flight per broker, so per input partition the outputs keep the
input order. A broker that does not take our outputs is waited for: the loop
goes back to its last commit and tries again (duplicates, no loss).

**The model call and the event loop.** aiokafka heartbeats, fetches ahead and
collects acknowledgements in tasks of this loop. A short model call is cheaper
inline than a hop to a thread and delays nothing that matters; a slow one
would stall those tasks. So a batch runs inline while the model's recent
calls took less than :data:`INLINE_MODEL_S`, and in a dedicated thread
otherwise (one thread: model calls never overlap, user modules need not be
thread-safe).

**Versions.** A model loaded beside the serving one (:mod:`.switching`) is
staged; the loop takes it between two micro-batches: the batches dispatched
before were predicted by the old model and carry its version header, every
one after by the new. Nothing else changes (offsets, the batches in flight).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from services.inferencer.batching import MicroBatcher
from services.inferencer.events import ReplicaEvents
from services.inferencer.model import ServedModel
from services.inferencer.rebalance import DrainOnRevoke, describe_partitions
from services.inferencer.routing import Output, Record, Router
from services.inferencer.stats import StatsWindow
from services.inferencer.switching import Staged
from shared.alive import AliveFile
from shared.codecs import Decoder
from shared.events.inference import ServeSpec
from shared.kafka import Producer, make_consumer, received_from, wait_for_assignment
from shared.process import Backoff
from shared.settings import Settings
from shared.topics import topics_for

__all__ = ["COMMIT_INTERVAL_S", "INLINE_MODEL_S", "MAX_IN_FLIGHT", "Inferencer"]

log = logging.getLogger("kafkaml.inferencer")

# Model calls that took longer than this (moving average) run in a thread, off the event loop.
INLINE_MODEL_S: Final = 0.02
# How long a replica waits for partitions before saying so (it goes on waiting).
_ASSIGNMENT_WARN_S: Final = 60.0
# Batches whose outputs may await their acknowledgements at once (module docstring: delivery).
MAX_IN_FLIGHT: Final = 4
# Completed batches are committed together at most this often: an OffsetCommit per batch of
# one or two inputs is a large cost at a high message rate. A kill repeats at most this much more.
COMMIT_INTERVAL_S: Final = 0.1
# Back-off between attempts while the broker does not take our outputs.
RETRY: Final = Backoff(initial=0.2, maximum=5.0)
# After a stop request, a fetch in progress gets this long to bring its batch.
_STOP_GRACE_S: Final = 1.0
_CONSUMER_NAME: Final = "inferencer"


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
        events: ReplicaEvents,
        version: int,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.replica = replica
        self.producer = producer
        self.model = model
        self.decoder = decoder
        self.version = version
        self.router = Router(spec, producer, distributed=distributed, version=version)
        self._staged: Staged | None = None
        self.events = events
        self.dead_letter_topic = topics_for(settings).dead_letters
        self.window = StatsWindow()
        # Held while a batch is dispatched, so that a revocation sees every batch in flight.
        self.batch_lock = asyncio.Lock()
        self.model_seconds = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafkaml-model")
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
        consumer.subscribe([spec.input_topic], listener=DrainOnRevoke(self))
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
        delays = RETRY.delays()
        try:
            while not stop.is_set():
                try:
                    batch = await self._next_batch(batcher, stop, stopping)
                    if self._staged is not None:  # between two micro-batches
                        await self._switch()
                    if batch:
                        # Not held while fetching: during a rebalance getmany waits for the new
                        # assignment, which waits for the revocation listener, which waits for this.
                        async with self.batch_lock:
                            await self._dispatch(batch)
                    await self._settle(block=len(self._in_flight) >= MAX_IN_FLIGHT)
                    if self._to_commit and time.monotonic() >= self._commit_due:
                        await self._commit_pending()
                    delays = RETRY.delays()
                except KafkaError as exc:
                    # The broker did not take our outputs: start again from the last commit.
                    log.warning("producing failed (%s: %s): resuming from the last commit", type(exc).__name__, exc)
                    await self._rewind()
                    await asyncio.sleep(next(delays))
                if announce.done() and (error := announce.exception()) is not None:
                    raise error
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
        log.info("holding partitions %s", describe_partitions(consumer.assignment()))
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
        in batches; a partition we have not consumed from yet counts as unknown.
        None when nothing is known.
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

    # --- versions ---

    def stage(self, staged: Staged) -> None:
        """Serve ``staged`` from the next micro-batch on (the switcher calls it once the model is warm)."""
        self._staged = staged

    async def _switch(self) -> None:
        staged, self._staged = self._staged, None
        assert staged is not None
        old = self.version
        self.model, self.version = staged.model, staged.version
        self.model_seconds = staged.seconds
        self.router.set_version(staged.version)
        log.info(
            "switched from version %d to version %d (sha256 %s…) between two micro-batches: %s",
            old, staged.version, staged.sha256[:12], staged.model.describe(),
        )  # fmt: skip
        # Told before the first batch of the new version goes out (one acknowledgement's wait,
        # once per switch): every output stamped after the event is the new version's.
        try:
            await self.events.version_changed(staged.version)
        except KafkaError as exc:  # the switch stands; only its report is lost
            log.warning("could not publish the change to version %d: %s", staged.version, exc)

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
        outputs: list[Output] = []
        sent: list[int] = []
        classes: np.ndarray[Any, Any] | None = None
        if good:
            kept, arrays, model_failures = await self._predict(decoded.x)
            failures.extend((good[k], reason) for k, reason in model_failures)
            if kept:
                classes = await self.router.route(records, [good[k] for k in kept], arrays, outputs, sent)
        acks = await self.router.send(outputs)
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
        records, sent = flight.records, flight.sent
        if len(sent) == len(records):  # no input failed: no indexing per message
            stamps = [record.timestamp for record in records]
        else:
            stamps = [records[i].timestamp for i in sent]
        timestamps = np.array(stamps, dtype=np.float64)
        self.window.add(len(sent), acked_ms - timestamps[timestamps > 0], flight.classes)
        self.window.add_errors(flight.errors)
        # In order per partition: the last one wins. A TopicPartition per partition, not per record.
        last = {(record.topic, record.partition): record.offset for record in records}
        for (topic, partition), offset in last.items():
            self._to_commit[TopicPartition(topic, partition)] = offset + 1

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
