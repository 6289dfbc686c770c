"""One owner per aggregate: a result reads ``finished`` only once everything a user downloads is
stored. The trainer's ``TrainingFinished`` alone does not finish it; the metrics service stores
the metrics and the model, announces ``ResultStored``, and the orchestrator then says finished.
Real orchestrator, metrics and API processes, a real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.artifacts import chunk_artifact
from shared.db.roles import plain_url
from shared.events import TrainingFinished
from shared.events.training import ArtifactRef, SampleCounts, TrainingOutcome
from shared.kafka import Producer, ensure_topics
from shared.settings import Settings
from tests.conftest import service_env
from tests.integration.api_process import start_api
from tests.integration.rows import add_result

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]
TOKEN = "ownership-token"


async def final_metrics_stored(database: str, result_id: int, timeout_s: float = 60) -> None:
    connection = await asyncpg.connect(plain_url(database))
    try:
        deadline = time.monotonic() + timeout_s
        while not await connection.fetchval("SELECT count(*) FROM final_metrics WHERE result_id = $1", result_id):
            assert time.monotonic() < deadline, "the metrics service did not store the final metrics"
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


def says(path: Path, line: str) -> bool:
    return path.exists() and line in path.read_text(errors="replace")


async def logged(path: Path, line: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(says, path, line):
        assert time.monotonic() < deadline, f"{path.name} never said {line!r}"
        await asyncio.sleep(0.2)


async def test_a_result_reads_finished_only_once_its_model_can_be_downloaded(
    settings: Settings, database: str, run_service: StartService, tmp_path: Path
) -> None:
    await ensure_topics(settings)
    run_service("services.orchestrator", service_env(settings, database=True), name="orchestrator")
    # The rows go in once the orchestrator has reconciled, so that it launches no trainer for them.
    await logged(tmp_path / "orchestrator-0.log", "orchestrator ready")
    rows = await add_result(database, "training")
    deployment, result = rows.deployment, rows.result
    run_service("services.metrics", service_env(settings, database=True), name="metrics")
    base = await start_api(settings, run_service, TOKEN)

    model = b"a trained model " * 5000
    chunks = chunk_artifact(result, model, chunk_bytes=20_000)
    outcome = TrainingOutcome(
        result_id=result,
        deployment_id=deployment,
        test_metrics={"accuracy": 0.9},
        training_time=1.5,
        artifact=ArtifactRef(format="keras", size=len(model), sha256=chunks[0].payload.sha256, chunks=len(chunks)),
        samples=SampleCounts(train=8, validation=1, test=1),
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as api:
        async with Producer(settings) as producer:
            await producer.publish(TrainingFinished(payload=outcome))
            await final_metrics_stored(database, result)
            await asyncio.sleep(2)  # the orchestrator has had its chance to (wrongly) say finished
            before = (await api.get(f"/api/v1/results/{result}")).json()
            assert before["status"] == "training", "the trainer's word alone must not finish the result"
            assert (await api.get(f"/api/v1/results/{result}/model")).status_code == 409

            for chunk in chunks:
                await producer.publish(chunk)
        deadline = time.monotonic() + 60
        while (status := (await api.get(f"/api/v1/results/{result}")).json()["status"]) != "finished":
            assert status == "training", status
            assert time.monotonic() < deadline, "the result never finished"
            await asyncio.sleep(0.05)
        download = await api.get(f"/api/v1/results/{result}/model")
        assert download.status_code == 200, download.text
        assert download.content == model
        deployment_status = (await api.get(f"/api/v1/deployments/{deployment}")).json()["status"]
        assert deployment_status == "finished"
