"""Reading a result's chunks back from the end of its partition, against the real broker.

A long-lived result's partition of the artifacts topic keeps every version and checkpoint it
ever had, and every copy the orchestrator sent again. A replica (and a restarted incremental
trainer) must find what it needs near the end without reading the whole partition, and still
find it at the start, or when it arrives later.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from services.inferencer.model import fetch_artifact
from services.trainer.incremental import find_checkpoint
from shared.artifacts import FIRST_SPAN, chunk_artifact
from shared.errors import WorkloadFailed
from shared.events.signing import Key, Keyring, job_signer
from shared.events.training import ArtifactChunk, IncrementalState
from shared.kafka import Producer, ensure_topics
from shared.settings import Settings
from tests.conftest import BUS_KEY
from tests.integration.inferencer.serving import spec_for
from tests.unit.fakes import job_spec

pytestmark = pytest.mark.integration

RESULT = 41
OLDER = 300  # other versions of the same result, one small chunk each


async def publish(settings: Settings, chunks: list[ArtifactChunk], signer: Key | None = None) -> None:
    async with Producer(settings) as producer:
        for chunk in chunks:
            await producer.publish(chunk, signer=signer)


def others(count: int) -> list[ArtifactChunk]:
    return [chunk_artifact(RESULT, f"version {n}".encode())[0] for n in range(count)]


def records_read(caplog: pytest.LogCaptureFixture) -> int:
    (line,) = [r.getMessage() for r in caplog.records if "checksum verified" in r.getMessage()]
    match = re.search(r"\((\d+) records read\)", line)
    assert match, line
    return int(match.group(1))


async def test_the_newest_copy_is_found_in_the_last_records(kafka: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "kafkaml.inferencer")
    await ensure_topics(kafka)
    model = b"the model" * 1000
    # Many small chunks: the artifact spans more than the first span read back.
    wanted = chunk_artifact(RESULT, model, chunk_bytes=200)
    assert len(wanted) > FIRST_SPAN
    await publish(kafka, [*wanted, *others(OLDER), *wanted])
    serve = spec_for(kafka, model, input_topic="in", output_topic="out", result_id=RESULT)
    assert await fetch_artifact(kafka, serve, timeout_s=30) == model
    # The last copy lies in the first spans read back (32, then 64 records); the partition holds
    # that copy, OLDER records before it and the first copy before those.
    assert len(wanted) <= records_read(caplog) <= FIRST_SPAN * 3


async def test_the_only_copy_at_the_start_is_found_and_one_that_comes_later_too(kafka: Settings) -> None:
    await ensure_topics(kafka)
    first = b"the first model"
    await publish(kafka, [*chunk_artifact(RESULT, first), *others(OLDER)])
    serve = spec_for(kafka, first, input_topic="in", output_topic="out", result_id=RESULT)
    assert await fetch_artifact(kafka, serve, timeout_s=30) == first

    later = b"a model sent after the replica started"
    serve = spec_for(kafka, later, input_topic="in", output_topic="out", result_id=RESULT)
    fetching = asyncio.create_task(fetch_artifact(kafka, serve, timeout_s=30))
    await asyncio.sleep(2)
    assert not fetching.done()
    await publish(kafka, chunk_artifact(RESULT, later))
    assert await asyncio.wait_for(fetching, 30) == later


async def test_a_model_that_never_comes_fails_saying_how_many_chunks_came(kafka: Settings) -> None:
    await ensure_topics(kafka)
    await publish(kafka, others(3))
    serve = spec_for(kafka, b"never sent", input_topic="in", output_topic="out", result_id=RESULT)
    with pytest.raises(WorkloadFailed, match=r"did not arrive on .* within 2 s \(none of its chunks\)"):
        await fetch_artifact(kafka, serve, timeout_s=2)


async def test_a_restarted_trainer_takes_the_newest_complete_checkpoint(kafka: Settings) -> None:
    await ensure_topics(kafka)
    job = job_spec("job-ckpt", RESULT)
    key = Keyring([BUS_KEY]).signing_key(job_signer(job.job_id, [RESULT]))
    job = job.model_copy(update={"signing_key": key})

    def checkpoint(window: int, data: bytes) -> list[ArtifactChunk]:
        state = IncrementalState(window=window, topic="stream", next_offsets={0: window * 100})
        return [
            ArtifactChunk(payload=chunk.payload.model_copy(update={"state": state, "purpose": "checkpoint"}))
            for chunk in chunk_artifact(RESULT, data, chunk_bytes=100)
        ]

    # Windows 1 to 3 complete (3 and 2 both within the first span), window 4 cut short by a crash.
    chunks = [chunk for window in (1, 2, 3) for chunk in checkpoint(window, f"state {window}".encode() * 10)]
    cut = checkpoint(4, b"state 4" * 100)[:-1]
    await publish(kafka, others(OLDER))
    await publish(kafka, [*chunks, *cut], signer=Key.of(key))
    found = await find_checkpoint(kafka, job, RESULT)
    assert found is not None
    assert found.state.window == 3 and found.data == b"state 3" * 10
