"""Model versions end to end through the real metrics service, the API, the broker and PostgreSQL:
a bounded result gets version 1, an incremental trainer's versions 1 and 2 (signed with its job's
key) are stored, listed and downloadable with their bytes, its windows listed; a version announced
with another job's key is dead-lettered and stores nothing."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from shared.events import ModelVersionPublished, WindowCompleted
from shared.events.signing import Keyring, job_signer
from shared.events.versions import ModelVersion, WindowMetrics
from shared.kafka import Producer, ensure_topics
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import service_env
from tests.integration.api_process import start_api
from tests.integration.metrics.test_metrics_service import (
    StartService,
    artifact_chunks,
    fetch,
    finished,
    read_records,
    wait_until,
)
from tests.integration.rows import add_result

pytestmark = pytest.mark.integration

TOKEN = "versions-token"


def version_of(result_id: int, version: int, data: bytes) -> ModelVersionPublished:
    chunk = artifact_chunks(result_id, data, 1)[0].payload
    return ModelVersionPublished(
        payload=ModelVersion(
            result_id=result_id,
            version=version,
            sha256=chunk.sha256,
            size=len(data),
            format="pt",
            metrics={"accuracy": 0.8 + version / 100},
            window=version,
        )
    )


async def test_versions_are_stored_listed_and_downloadable(
    settings: Settings, database: str, run_service: StartService
) -> None:
    await ensure_topics(settings)
    topics = topics_for(settings)
    bounded = (await add_result(database, "training")).result
    incremental = (await add_result(database, "training")).result
    [job] = await fetch(database, "SELECT job_id FROM training_results WHERE id = $1", incremental)
    keys = Keyring([settings.bus_key or ""])
    trainer = keys.key(job_signer(str(job["job_id"]), [incremental]))
    forger = keys.key(job_signer(str(uuid.uuid4()), [incremental + 100]))
    run_service("services.metrics", service_env(settings, database=True), name="metrics")
    base = await start_api(settings, run_service, TOKEN)

    model, one, two, three = (os.urandom(n) for n in (4000, 3000, 700_000, 2000))
    async with Producer(settings) as producer:
        for chunk in artifact_chunks(bounded, model, 2):
            await producer.publish(chunk)
        await producer.publish(finished(bounded, model, 2))
        # Version 2: its announcement before its chunks; version 1 the other way round.
        await producer.publish(version_of(incremental, 2, two), signer=trainer)
        for number, data in ((1, one), (2, two), (3, three)):
            for chunk in artifact_chunks(incremental, data, 2):
                chunk.payload.version = number
                await producer.publish(chunk, signer=trainer)
        await producer.publish(version_of(incremental, 1, one), signer=trainer)
        await producer.publish(version_of(incremental, 3, three), signer=forger)  # dead-lettered
        window = WindowMetrics(
            result_id=incremental,
            deployment_id=1,
            window=1,
            samples=50,
            prequential={"accuracy": 0.81},
            topic="stream",
            offsets=[{"partition": 0, "start": 0, "end": 50}],  # type: ignore[list-item]  # validated into spans
            version=1,
        )
        await producer.publish(WindowCompleted(payload=window), signer=trainer)

    assert await wait_until(database, "SELECT count(*) FROM model_versions", 3) == 3
    assert await wait_until(database, "SELECT count(*) FROM window_metrics", 1) == 1
    dead = await read_records(settings, topics.dead_letters, 1)
    [reason] = [dict(r.headers)["kafkaml-dlq-reason"].decode() for r in dead]
    assert "may not sign a ModelVersionPublished" in reason
    assert await fetch(database, "SELECT * FROM model_versions WHERE version = 3") == []
    events = [r.value for r in await read_records(settings, topics.events, 20, timeout_s=5)]
    assert sum(b'"ModelVersionStored"' in value for value in events) == 3
    assert sum(b'"ResultStored"' in value for value in events) == 1

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base + "/api/v1", headers=headers) as client:
        [first] = (await client.get(f"/results/{bounded}/versions")).json()
        assert (first["version"], first["size"], first["format"], first["window"]) == (1, len(model), "keras", None)
        assert first["metrics"] == {"loss": 0.3, "acc": 0.91}
        listed = (await client.get(f"/results/{incremental}/versions")).json()
        assert [(v["version"], v["window"], v["size"]) for v in listed] == [(1, 1, len(one)), (2, 2, len(two))]
        for number, data in ((1, one), (2, two)):
            download = await client.get(f"/results/{incremental}/versions/{number}/model")
            assert download.status_code == 200 and download.content == data
            assert download.headers["X-Checksum-SHA256"] == listed[number - 1]["sha256"]
            assert f'filename="result-{incremental}-v{number}.pt"' in download.headers["Content-Disposition"]
        newest = await client.get(f"/results/{incremental}/model")
        assert newest.content == two and newest.headers["X-Model-Version"] == "2"
        missing = await client.get(f"/results/{incremental}/versions/3/model")
        assert missing.status_code == 404 and missing.json()["field"] == "version"
        [curve] = (await client.get(f"/results/{incremental}/windows")).json()
        assert (curve["window"], curve["samples"], curve["version"]) == (1, 50, 1)
        assert curve["prequential"] == {"accuracy": 0.81}
        result = (await client.get(f"/results/{incremental}")).json()
        assert result["latest_version"] == 2 and result["model_available"] is True
