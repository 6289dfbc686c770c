"""Catalog rows written straight to PostgreSQL, as the orchestrator would, for tests of the
services downstream of it (metrics, API) that need a result to hang from."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from shared.db.roles import plain_url
from shared.events.training import JobModel, JobSpec

# A summary as the validator writes one (a model with no layers).
SUMMARY = '{"layers": [], "parameters": 0, "trainable_parameters": 0, "input_shapes": [], "output_shapes": []}'


@dataclass(frozen=True)
class ResultRows:
    model: int
    deployment: int
    result: int


async def add_result(database: str, status: str) -> ResultRows:
    """A model, a configuration, a deployment, its job (with a valid spec) and one result."""
    connection = await asyncpg.connect(plain_url(database))
    try:
        model = await connection.fetchval(
            "INSERT INTO models (name, framework, code, imports, description, summary, command_id)"
            " VALUES ('m', 'tensorflow', 'x', '', '', $1::jsonb, gen_random_uuid()) RETURNING id",
            SUMMARY,
        )
        configuration = await connection.fetchval(
            "INSERT INTO configurations (name, description, command_id)"
            " VALUES ('c', '', gen_random_uuid()) RETURNING id"
        )
        deployment = await connection.fetchval(
            "INSERT INTO deployments (configuration_id, batch_size, fit, evaluate, confusion_matrix, gpus, command_id)"
            " VALUES ($1, 32, '{}', '{}', false, 0, gen_random_uuid()) RETURNING id",
            configuration,
        )
        job = uuid.uuid4()
        spec = JobSpec(
            job_id=str(job),
            deployment_id=deployment,
            framework="tensorflow",
            models=[JobModel(result_id=0, model_id=model, name="m", code="x")],
            batch_size=32,
            fit={},
            evaluate={},
            confusion_matrix=False,
        )
        await connection.execute(
            "INSERT INTO training_jobs (id, deployment_id, spec) VALUES ($1, $2, $3::jsonb)",
            job,
            deployment,
            spec.model_dump_json(),
        )
        result = await connection.fetchval(
            "INSERT INTO training_results (deployment_id, model_id, job_id, status) VALUES ($1, $2, $3, $4)"
            " RETURNING id",
            deployment,
            model,
            job,
            status,
        )
        return ResultRows(model=int(model), deployment=int(deployment), result=int(result))
    finally:
        await connection.close()
