"""The OpenAPI document tells the truth: schemathesis calls every operation of the running API, with
the token, and finds no server error and no status, content type, header or body the document does
not declare.

No orchestrator runs, so every command waits its KAFKAML_COMMAND_TIMEOUT_S (kept short) and is
answered 202: the run checks that answer too. One finished result (curves, confusion matrix, trained
model) is in the database, and half the generated ids name its rows, so the routes that draw
pictures and send files answer 200 as well as 404 (it has a model version and a window).
The run is bounded (few examples per operation, a time
budget) to stay well under two minutes on a small machine.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from shared.db.roles import plain_url
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.integration.api_process import start_api
from tests.integration.rows import ResultRows, add_result

pytestmark = pytest.mark.integration

TOKEN = "openapi-token"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
)


async def add_finished_result(database: str) -> ResultRows:
    """A result with what its routes show: curves, a confusion matrix, a model, its training stream."""
    rows = await add_result(database, "finished")
    stream = {"control_topic": "c", "partition": 0, "offset": 0, "input_format": "RAW", "input_config": {}}
    connection = await asyncpg.connect(plain_url(database))
    try:
        for epoch in (1, 2, 3):
            await connection.execute(
                "INSERT INTO epoch_metrics (result_id, epoch, train, val) VALUES ($1, $2, $3::jsonb, $4::jsonb)",
                rows.result, epoch, json.dumps({"loss": 1 / epoch}), json.dumps({"loss": 1.2 / epoch}),
            )  # fmt: skip
        await connection.execute(
            "INSERT INTO final_metrics (result_id, test_metrics, confusion_matrix, training_time, samples,"
            " artifact_sha256, artifact_format) VALUES ($1, '{}', $2::jsonb, 1.5, '{}', $3, 'keras')",
            rows.result, json.dumps([[5, 1, 0], [0, 6, 1], [1, 0, 7]]), "0" * 64,
        )  # fmt: skip
        await connection.execute(
            "INSERT INTO model_versions (result_id, version, sha256, size, format, metrics, data)"
            " VALUES ($1, 1, $2, 5, 'keras', '{\"accuracy\": 0.5}', 'model')",
            rows.result, "0" * 64,
        )  # fmt: skip
        await connection.execute(
            'INSERT INTO window_metrics (result_id, "window", samples, prequential, train, val, topic, offsets,'
            " version)"
            " VALUES ($1, 1, 10, '{\"accuracy\": 0.5}', '{}', '{}', 'stream', '[{\"partition\": 0, \"start\": 0,"
            ' "end": 10}]\', 1)',
            rows.result,
        )
        await connection.execute(
            "UPDATE training_results SET datasource = $2::jsonb WHERE id = $1", rows.result, json.dumps(stream)
        )
    finally:
        await connection.close()
    return rows


def config_file(folder: Path, rows: ResultRows) -> Path:
    """Half the ids schemathesis generates name the rows that exist (ids of a fresh database)."""
    ids = {
        "path.model_id": rows.model,
        "path.configuration_id": 1,
        "path.deployment_id": rows.deployment,
        "query.deployment_id": rows.deployment,
        "path.result_id": rows.result,
        "path.version": 1,
    }
    lines = [f"[dictionaries.{key.replace('.', '_')}]\nvalues = [{value}]\n" for key, value in ids.items()]
    lines.append("[parameters]")
    lines += [f'"{key}" = {{ dictionary = "{key.replace(".", "_")}", probability = 0.5 }}' for key in ids]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def start_api_for_schemathesis(settings: Settings, run_service: Callable[..., subprocess.Popen[bytes]]) -> str:
    await ensure_topics(settings)
    return await start_api(settings, run_service, TOKEN, KAFKAML_COMMAND_TIMEOUT_S="0.5", KAFKAML_LOG_LEVEL="WARNING")


def schemathesis(base: str, config: Path) -> subprocess.CompletedProcess[str]:
    # Run in the test's folder: schemathesis and hypothesis keep caches in the working directory.
    command = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "5",
        "--max-time",
        "45",
        # One worker: hypothesis parses lambdas' source with ast.parse, which CPython 3.11 cannot do
        # from several threads at once ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--seed",
        "8",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--no-color",
        # An endless stream answers nothing a request/response check can wait for: test_updates.py
        # checks its statuses and content type against the document instead.
        "--exclude-path",
        "/api/v1/updates",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=110, check=False, cwd=config.parent)


async def test_every_answer_is_declared(
    settings: Settings, database: str, run_service: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    rows = await add_finished_result(database)
    base = await start_api_for_schemathesis(settings, run_service)
    run = await asyncio.to_thread(schemathesis, base, config_file(tmp_path, rows))
    print(run.stdout[-6000:])  # the summary, for the log of the run
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
