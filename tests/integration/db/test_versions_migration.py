"""Migration 0006 on a database that already holds models: each stored model becomes its result's
version 1 (the one place for a model's bytes), one still waiting for its final metrics waits as
a chunk, and the inferences so far are pinned to version 1."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from shared.db.migrate import upgrade
from shared.db.roles import plain_url
from shared.stack.postgres import EmbeddedPostgres
from tests.conftest import database_url

pytestmark = pytest.mark.integration


async def test_artifacts_move_into_model_versions(postgres: EmbeddedPostgres) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(postgres.url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(postgres.url, name)
    try:
        await asyncio.to_thread(upgrade, url, "0005")
        connection = await asyncpg.connect(plain_url(url))
        try:
            model = await connection.fetchval(
                "INSERT INTO models (name, framework, code, imports, description, summary, command_id)"
                " VALUES ('m', 'tensorflow', 'x', '', '', '{}'::jsonb, gen_random_uuid()) RETURNING id"
            )
            configuration = await connection.fetchval(
                "INSERT INTO configurations (name, description, command_id) VALUES ('c', '', gen_random_uuid())"
                " RETURNING id"
            )
            deployment = await connection.fetchval(
                "INSERT INTO deployments (configuration_id, batch_size, fit, evaluate, confusion_matrix, gpus,"
                " command_id) VALUES ($1, 32, '{}', '{}', false, 0, gen_random_uuid()) RETURNING id",
                configuration,
            )
            job = uuid.uuid4()
            await connection.execute(
                "INSERT INTO training_jobs (id, deployment_id, spec) VALUES ($1, $2, '{}')", job, deployment
            )
            finished, waiting = [
                await connection.fetchval(
                    "INSERT INTO training_results (deployment_id, model_id, job_id, status)"
                    " VALUES ($1, $2, $3, $4) RETURNING id",
                    deployment,
                    model,
                    job,
                    status,
                )
                for status in ("finished", "training")
            ]
            for result, data in ((finished, b"model-a"), (waiting, b"model-b")):
                await connection.execute(
                    "INSERT INTO artifacts (result_id, sha256, size, data) VALUES ($1, $2, $3, $4)",
                    result,
                    f"{result:064d}",
                    len(data),
                    data,
                )
            await connection.execute(
                "INSERT INTO final_metrics (result_id, test_metrics, training_time, samples, artifact_sha256,"
                " artifact_format) VALUES ($1, '{\"accuracy\": 0.9}', 1.0, '{}', $2, 'pt')",
                finished,
                f"{finished:064d}",
            )
            await connection.execute(
                "INSERT INTO inferences (result_id, model_id, replicas, input_topic, output_topic, input_format,"
                " input_config, gpus, status, job_id, spec, command_id) VALUES ($1, $2, 1, 'in', 'out', 'RAW',"
                " '{}', 0, 'running', gen_random_uuid(), '{}', gen_random_uuid())",
                finished,
                model,
            )
        finally:
            await connection.close()

        await asyncio.to_thread(upgrade, url)

        connection = await asyncpg.connect(plain_url(url))
        try:
            versions = await connection.fetch("SELECT result_id, version, format, metrics, data FROM model_versions")
            chunks = await connection.fetch('SELECT result_id, version, "index", count, data FROM artifact_chunks')
            policy = await connection.fetchrow("SELECT model_version, follow_latest, serving_version FROM inferences")
            tables = {r["tablename"] for r in await connection.fetch("SELECT tablename FROM pg_tables")}
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    assert [(r["result_id"], r["version"], r["format"], r["data"]) for r in versions] == [
        (finished, 1, "pt", b"model-a")
    ]
    assert '"accuracy": 0.9' in versions[0]["metrics"]
    assert [tuple(r) for r in chunks] == [(waiting, 1, 0, 1, b"model-b")]
    assert tuple(policy) == (1, False, None)
    assert "artifacts" not in tables
