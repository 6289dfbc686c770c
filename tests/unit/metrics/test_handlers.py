"""Metrics handlers and batch handling against an in-memory unit of work."""

from __future__ import annotations

import base64
import hashlib
import math
import uuid
from typing import Any, Self

import pytest

from services.metrics.app import split_by_size
from services.metrics.handlers import ROUTER
from services.metrics.uow import Tally
from shared.db.tables import FinalMetrics, VersionAnnouncement
from shared.errors import Invalid
from shared.events import (
    ArtifactChunk,
    ArtifactRejected,
    Envelope,
    EpochCompleted,
    ModelVersionPublished,
    ModelVersionStored,
    ResultStored,
    TrainingFinished,
    WindowCompleted,
)
from shared.events.training import ArtifactRef, Chunk, EpochMetrics, SampleCounts, TrainingOutcome
from shared.events.versions import ModelVersion, WindowMetrics
from shared.handling import handle_batch_once
from shared.kafka import Received
from tests.unit.fakes import FakeOutcomes

CONSUMER = "metrics"


# --- fakes -------------------------------------------------------------------


class FakeBatchProcessed:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, uuid.UUID], list[dict[str, Any]]] = {}

    async def seen(self, consumer: str, message_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        return {m: self.rows[(consumer, m)] for m in message_ids if (consumer, m) in self.rows}

    async def add_many(self, consumer: str, published: dict[uuid.UUID, list[dict[str, Any]]]) -> None:
        for message_id, answers in published.items():
            assert (consumer, message_id) not in self.rows, "a processed id was recorded twice"
            self.rows[(consumer, message_id)] = answers


class FakeMetrics:
    def __init__(self, results: set[int]) -> None:
        self.results = results
        self.epochs: dict[tuple[int, int], tuple[dict[str, Any], dict[str, Any]]] = {}
        self.finals: dict[int, FinalMetrics] = {}
        self.windows: dict[tuple[int, int], WindowMetrics] = {}

    async def result_exists(self, result_id: int) -> bool:
        return result_id in self.results

    async def upsert_epoch(self, result_id: int, epoch: int, train: dict[str, Any], val: dict[str, Any]) -> None:
        self.epochs[(result_id, epoch)] = (dict(train), dict(val))

    async def upsert_final(self, final: FinalMetrics) -> None:
        self.finals[final.result_id] = final

    async def final(self, result_id: int) -> FinalMetrics | None:
        return self.finals.get(result_id)

    async def upsert_window(self, window: WindowMetrics) -> bool:
        if (window.result_id, window.window) in self.windows:
            return False
        self.windows[(window.result_id, window.window)] = window
        return True


class FakeArtifacts:
    def __init__(self) -> None:
        # (result, version, index) → (count, sha, data)
        self.chunks: dict[tuple[int, int, int], tuple[int, str, bytes]] = {}
        self.versions: dict[tuple[int, int], tuple[ModelVersion, bytes]] = {}
        self.announced: dict[tuple[int, int], VersionAnnouncement] = {}

    @property
    def stored(self) -> dict[int, tuple[str, bytes]]:
        """Version 1 of each result: a bounded training's model."""
        return {r: (mv.sha256, data) for (r, v), (mv, data) in self.versions.items() if v == 1}

    async def stored_sha256(self, result_id: int, version: int) -> str | None:
        found = self.versions.get((result_id, version))
        return found[0].sha256 if found else None

    async def version_with_sha256(self, result_id: int, sha256: str) -> ModelVersion | None:
        mine = [mv for (r, _), (mv, _) in sorted(self.versions.items()) if r == result_id and mv.sha256 == sha256]
        return mine[-1] if mine else None

    async def put_chunk(self, result_id: int, version: int, index: int, count: int, sha256: str, data: bytes) -> None:
        self.chunks[(result_id, version, index)] = (count, sha256, data)

    async def discard_chunks(self, result_id: int, version: int, *, keep_sha256: str | None = None) -> None:
        for key, (_, sha, _) in list(self.chunks.items()):
            if key[:2] == (result_id, version) and sha != keep_sha256:
                del self.chunks[key]

    async def chunks_present(self, result_id: int, version: int, sha256: str, count: int | None = None) -> int:
        return sum(
            1
            for (r, v, i), (c, s, _) in self.chunks.items()
            if (r, v) == (result_id, version) and s == sha256 and (count is None or c == count) and i < c
        )

    async def chunk_count(self, result_id: int, version: int, sha256: str) -> int | None:
        return next(
            (c for (r, v, _), (c, s, _) in self.chunks.items() if (r, v) == (result_id, version) and s == sha256), None
        )

    async def chunk_data(self, result_id: int, version: int, sha256: str) -> list[bytes]:
        return [
            d for (r, v, _), (_, s, d) in sorted(self.chunks.items()) if (r, v) == (result_id, version) and s == sha256
        ]

    async def announce(self, announced: ModelVersion) -> None:
        self.announced[(announced.result_id, announced.version)] = VersionAnnouncement(
            result_id=announced.result_id,
            version=announced.version,
            sha256=announced.sha256.lower(),
            size=announced.size,
            format=announced.format,
            metrics=dict(announced.metrics),
            window=announced.window,
        )

    async def announcement(self, result_id: int, version: int) -> VersionAnnouncement | None:
        return self.announced.get((result_id, version))

    async def forget_announcement(self, result_id: int, version: int) -> None:
        self.announced.pop((result_id, version), None)

    async def store(self, version: ModelVersion, data: bytes) -> None:
        self.versions[(version.result_id, version.version)] = (version, data)


class FakeMetricsUnitOfWork:
    """A transaction: effects are kept only on commit (as the database would)."""

    def __init__(self, results: set[int] | None = None) -> None:
        self.metrics = FakeMetrics(results if results is not None else {7})
        self.artifacts = FakeArtifacts()
        self.processed = FakeBatchProcessed()
        self.outcomes = FakeOutcomes()
        self.tally = Tally()
        self.commits = 0
        self._snapshot: Any = None

    async def __aenter__(self) -> Self:
        self.tally = Tally()
        self._snapshot = (
            dict(self.metrics.epochs),
            dict(self.metrics.finals),
            dict(self.artifacts.chunks),
            dict(self.artifacts.versions),
            dict(self.artifacts.announced),
            dict(self.metrics.windows),
            dict(self.processed.rows),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is not None:  # rolled back
            (
                self.metrics.epochs,
                self.metrics.finals,
                self.artifacts.chunks,
                self.artifacts.versions,
                self.artifacts.announced,
                self.metrics.windows,
                self.processed.rows,
            ) = self._snapshot

    async def commit(self) -> None:
        self.commits += 1

    async def rollback(self) -> None:
        return None


# --- messages ------------------------------------------------------------------


def epoch(n: int, result_id: int = 7, loss: float = 0.5) -> EpochCompleted:
    return EpochCompleted(
        payload=EpochMetrics(result_id=result_id, epoch=n, train={"loss": loss / n}, val={"loss": loss * 2 / n})
    )


def chunks_of(data: bytes, count: int, result_id: int = 7, sha256: str | None = None) -> list[ArtifactChunk]:
    digest = sha256 or hashlib.sha256(data).hexdigest()
    size = -(-len(data) // count)
    return [
        ArtifactChunk(
            payload=Chunk(
                result_id=result_id,
                index=i,
                count=count,
                sha256=digest,
                data=base64.b64encode(data[i * size : (i + 1) * size]).decode(),
            )
        )
        for i in range(count)
    ]


def finished(result_id: int = 7, sha256: str = "ab" * 32) -> TrainingFinished:
    return TrainingFinished(
        payload=TrainingOutcome(
            result_id=result_id,
            deployment_id=1,
            test_metrics={"loss": 0.25, "accuracy": 0.9},
            confusion_matrix=[[5, 1], [0, 6]],
            training_time=12.5,
            artifact=ArtifactRef(format="keras", size=3000, sha256=sha256, chunks=3),
            samples=SampleCounts(train=80, validation=10, test=10),
        )
    )


async def run(uow: FakeMetricsUnitOfWork, messages: list[Envelope]) -> Any:
    return await handle_batch_once(messages, ROUTER, uow=uow, consumer=CONSUMER)  # type: ignore[arg-type]


# --- tests ---------------------------------------------------------------------


async def test_a_batch_is_one_transaction_and_a_redelivered_epoch_changes_nothing() -> None:
    uow = FakeMetricsUnitOfWork()
    events = [epoch(n) for n in range(1, 11)]
    outcome = await run(uow, [*events, events[3]])  # one repeated within the batch
    assert uow.commits == 1
    assert (outcome.applied, outcome.skipped) == (10, 1)
    assert sorted(e for _, e in uow.metrics.epochs) == list(range(1, 11))
    assert uow.tally.epochs == 10

    # Redelivered later (a crash between commit and offset commit): nothing is applied again.
    uow.metrics.epochs[(7, 4)] = ({"loss": -1.0}, {})  # would be overwritten if the event ran again
    again = await run(uow, [events[3], events[7]])
    assert (again.applied, again.skipped) == (0, 2)
    assert uow.metrics.epochs[(7, 4)] == ({"loss": -1.0}, {})
    assert len(uow.processed.rows) == 10


async def test_a_newer_report_of_the_same_epoch_replaces_the_older_one() -> None:
    uow = FakeMetricsUnitOfWork()
    await run(uow, [epoch(1, loss=0.8)])
    await run(uow, [epoch(1, loss=0.4)])  # another event id: a retried job reporting again
    assert len(uow.metrics.epochs) == 1
    assert uow.metrics.epochs[(7, 1)][0] == {"loss": 0.4}


async def test_non_finite_metrics_are_stored_as_null() -> None:
    uow = FakeMetricsUnitOfWork()
    diverged = EpochCompleted(
        payload=EpochMetrics(result_id=7, epoch=1, train={"loss": math.inf, "acc": 0.5}, val={"loss": math.nan})
    )
    await run(uow, [diverged])
    assert uow.metrics.epochs[(7, 1)] == ({"loss": None, "acc": 0.5}, {"loss": None})


async def test_final_metrics_are_recorded_with_the_artifact_checksum() -> None:
    uow = FakeMetricsUnitOfWork()
    await run(uow, [finished(sha256="AB" * 32)])
    final = uow.metrics.finals[7]
    assert final.test_metrics == {"loss": 0.25, "accuracy": 0.9}
    assert final.confusion_matrix == [[5, 1], [0, 6]]
    assert final.samples == {"train": 80, "validation": 10, "test": 10, "bad": 0}
    assert (final.artifact_sha256, final.artifact_format) == ("ab" * 32, "keras")


async def test_out_of_order_and_duplicated_chunks_reassemble_the_artifact() -> None:
    uow = FakeMetricsUnitOfWork()
    data = bytes(range(256)) * 40
    first, second, third = chunks_of(data, 3)
    await run(uow, [finished(sha256=hashlib.sha256(data).hexdigest())])
    await run(uow, [third, first])
    assert not uow.artifacts.stored and len(uow.artifacts.chunks) == 2
    outcome = await run(uow, [first, second])  # ``first`` again: a redelivery
    assert outcome.skipped == 1
    assert uow.artifacts.stored[7] == (hashlib.sha256(data).hexdigest(), data)
    assert not uow.artifacts.chunks, "chunks are deleted once the artifact is whole"
    assert uow.tally.artifacts == [(7, len(data))]
    assert "1 artifact complete: result 7, 10 KiB" in uow.tally.summary()


async def test_a_checksum_mismatch_drops_the_chunks_and_stores_no_artifact() -> None:
    uow = FakeMetricsUnitOfWork()
    chunks = chunks_of(b"model bytes" * 100, 3, sha256="0" * 64)
    outcome = await run(uow, [chunks[1], chunks[0], chunks[2]])
    [rejected] = outcome.outgoing
    assert isinstance(rejected, ArtifactRejected) and rejected.payload.result_id == 7
    assert "corrupted" in rejected.payload.error
    assert not uow.artifacts.stored
    assert not uow.artifacts.chunks
    assert uow.tally.corrupt == [7]
    assert "checksum mismatch" in uow.tally.summary()


async def test_chunks_of_a_newer_attempt_replace_the_older_attempts() -> None:
    uow = FakeMetricsUnitOfWork()
    old = chunks_of(b"old model" * 50, 3)
    new = chunks_of(b"new model, other size" * 80, 2)
    await run(uow, [finished(sha256=new[0].payload.sha256)])
    await run(uow, [old[0], old[1]])
    await run(uow, [new[1]])
    assert {sha for _, sha, _ in uow.artifacts.chunks.values()} == {new[0].payload.sha256}
    await run(uow, [new[0]])
    assert uow.artifacts.stored[7][1] == b"new model, other size" * 80
    assert not uow.artifacts.chunks


async def test_a_chunk_of_an_artifact_already_whole_is_not_kept() -> None:
    uow = FakeMetricsUnitOfWork()
    data = b"x" * 999
    chunks = chunks_of(data, 3)
    await run(uow, [finished(sha256=chunks[0].payload.sha256), *chunks])
    resent = chunks_of(data, 3)  # the same artifact under new event ids
    await run(uow, [resent[0]])
    assert not uow.artifacts.chunks
    assert uow.artifacts.stored[7][1] == data


async def test_events_of_a_missing_result_are_refused_naming_it_and_the_batch_rolls_back() -> None:
    uow = FakeMetricsUnitOfWork(results={7})
    with pytest.raises(Invalid, match="training result 99 does not exist"):
        await run(uow, [epoch(1), epoch(2, result_id=99)])
    assert uow.commits == 0
    assert not uow.metrics.epochs and not uow.processed.rows


async def test_malformed_chunks_are_refused_naming_the_problem() -> None:
    uow = FakeMetricsUnitOfWork()
    not_base64 = ArtifactChunk(payload=Chunk(result_id=7, index=0, count=1, sha256="0" * 64, data="%%%"))
    with pytest.raises(Invalid, match="not base64"):
        await run(uow, [not_base64])
    outside = ArtifactChunk(payload=Chunk(result_id=7, index=3, count=3, sha256="0" * 64, data=""))
    with pytest.raises(Invalid, match="index 3 is not below its count 3"):
        await run(uow, [outside])


def test_batch_summary_reads_as_one_line() -> None:
    tally = Tally(epochs=10, finals=1, chunks=3, artifacts=[(7, 412 * 1024)])
    assert (
        tally.summary()
        == "stored 10 epochs, 1 final metrics, 3 artifact chunks (1 artifact complete: result 7, 412 KiB)"
    )
    assert tally.summary(skipped=2).endswith("; 2 already processed, skipped")


def test_a_batch_of_large_records_is_split_into_bounded_transactions() -> None:
    def item(size: int) -> tuple[Received, Envelope]:
        return Received(topic="t", partition=0, offset=size, key=None, value=b"x" * size), epoch(1)

    batch = [item(4), item(5), item(3), item(20), item(1)]
    groups = split_by_size(batch, 10)
    assert [[r.offset for r, _ in g] for g in groups] == [[4, 5], [3], [20], [1]]
    assert split_by_size(batch[:3], 100) == [batch[:3]]
    assert split_by_size([], 10) == []


async def test_result_stored_is_announced_once_metrics_and_model_are_both_stored() -> None:
    data = b"trained model" * 300
    sha = hashlib.sha256(data).hexdigest()
    parts = chunks_of(data, 2)
    for order in ("model first", "metrics first"):
        uow = FakeMetricsUnitOfWork()
        if order == "model first":
            first, second = await run(uow, parts), await run(uow, [finished(sha256=sha)])
        else:
            first, second = await run(uow, [finished(sha256=sha)]), await run(uow, parts)
        assert first.outgoing == [], f"{order}: nothing is announced while a part is missing"
        version, stored = second.outgoing
        assert isinstance(stored, ResultStored), order
        assert (stored.payload.result_id, stored.payload.sha256) == (7, sha)
        # A bounded training's model is its result's version 1, with the test metrics.
        assert isinstance(version, ModelVersionStored), order
        assert (version.payload.version, version.payload.size, version.payload.format) == (1, len(data), "keras")
        assert version.payload.metrics == {"loss": 0.25, "accuracy": 0.9}


async def test_metrics_naming_another_artifact_do_not_announce_the_stored_one() -> None:
    data = b"old attempt" * 100
    uow = FakeMetricsUnitOfWork()
    await run(uow, chunks_of(data, 1))
    outcome = await run(uow, [finished(sha256="ab" * 32)])  # a newer attempt whose model is still on its way
    assert outcome.outgoing == []


# --- model versions and windows ------------------------------------------------------------


def versioned(chunks: list[ArtifactChunk], version: int, purpose: str = "result") -> list[ArtifactChunk]:
    for chunk in chunks:
        chunk.payload.version = version
        chunk.payload.purpose = purpose  # type: ignore[assignment]  # the two literals, from a test's str
    return chunks


def published(data: bytes, version: int, result_id: int = 7) -> ModelVersionPublished:
    return ModelVersionPublished(
        payload=ModelVersion(
            result_id=result_id,
            version=version,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            format="pt",
            metrics={"accuracy": 0.5 + version / 10, "loss": math.nan},
            window=version * 2,
        )
    )


def window(n: int, version: int | None = None) -> WindowCompleted:
    return WindowCompleted(
        payload=WindowMetrics(
            result_id=7,
            deployment_id=1,
            window=n,
            samples=100,
            prequential={"accuracy": 0.7, "loss": math.inf},
            train={"loss": 0.3},
            topic="stream",
            offsets=[{"partition": 0, "start": 100 * (n - 1), "end": 100 * n}],  # type: ignore[list-item]  # validated
            version=version,
        )
    )


async def test_checkpoint_chunks_are_not_stored_and_are_no_error() -> None:
    uow = FakeMetricsUnitOfWork()
    outcome = await run(uow, versioned(chunks_of(b"state" * 100, 2), 3, purpose="checkpoint"))
    assert outcome.outgoing == [] and outcome.applied == 2
    assert not uow.artifacts.chunks and not uow.artifacts.versions


async def test_a_published_version_is_stored_whichever_of_its_chunks_and_announcement_comes_first() -> None:
    for order in ("chunks first", "announcement first"):
        uow = FakeMetricsUnitOfWork()
        one, two = b"version one" * 90, b"version two" * 120
        parts = versioned(chunks_of(two, 3), 2)
        if order == "chunks first":
            first, second = await run(uow, parts), await run(uow, [published(two, 2)])
        else:
            first, second = await run(uow, [published(two, 2)]), await run(uow, parts)
        assert first.outgoing == [], order
        [stored] = second.outgoing
        assert isinstance(stored, ModelVersionStored), order
        assert (stored.payload.version, stored.payload.window, stored.payload.format) == (2, 4, "pt")
        assert stored.payload.metrics == {"accuracy": 0.7, "loss": None}
        await run(uow, [*versioned(chunks_of(one, 1), 1), published(one, 1)])
        assert {k: d for k, (_, d) in uow.artifacts.versions.items()} == {(7, 1): one, (7, 2): two}
        assert not uow.artifacts.chunks and not uow.artifacts.announced, order


async def test_a_redelivered_version_changes_nothing_and_repeats_its_answer() -> None:
    uow = FakeMetricsUnitOfWork()
    data = b"v1" * 500
    messages: list[Envelope] = [*versioned(chunks_of(data, 2), 1), published(data, 1)]
    first = await run(uow, messages)
    again = await run(uow, messages)
    assert [m.event_id for m in again.outgoing] == [m.event_id for m in first.outgoing]
    assert (again.applied, again.skipped) == (0, 3)
    # The same version announced again under a new id (a trainer's retry): nothing new to say.
    assert (await run(uow, [published(data, 1)])).outgoing == []


async def test_an_incremental_result_is_stored_when_its_last_version_is() -> None:
    uow = FakeMetricsUnitOfWork()
    data = b"last version" * 70
    await run(uow, [*versioned(chunks_of(data, 1), 3), published(data, 3)])
    [stored] = (await run(uow, [finished(sha256=hashlib.sha256(data).hexdigest())])).outgoing
    assert isinstance(stored, ResultStored) and stored.payload.size == len(data)
    assert list(uow.artifacts.versions) == [(7, 3)], "no version 1 is made of it"


async def test_a_corrupted_version_is_dropped_without_failing_the_result() -> None:
    uow = FakeMetricsUnitOfWork()
    outcome = await run(uow, versioned(chunks_of(b"bytes" * 99, 2, sha256="1" * 64), 4))
    assert outcome.outgoing == [] and not uow.artifacts.chunks and uow.tally.corrupt == [7]


async def test_windows_are_stored_once_each_with_finite_metrics() -> None:
    uow = FakeMetricsUnitOfWork()
    await run(uow, [window(1), window(2, version=1)])
    await run(uow, [window(2, version=1)])  # a new event id for a window already stored
    assert sorted(uow.metrics.windows) == [(7, 1), (7, 2)]
    assert uow.metrics.windows[(7, 1)].prequential == {"accuracy": 0.7, "loss": None}
    assert uow.tally.windows == 0 and "windows" not in uow.tally.summary()
    with pytest.raises(Invalid, match="training result 8 does not exist"):
        await run(uow, [WindowCompleted(payload=window(1).payload.model_copy(update={"result_id": 8}))])
