"""The OpenAPI document tells the truth: schemathesis calls every operation of the running API, with
the token, and finds no server error and no status, content type, header or body the document does
not declare.

No orchestrator runs, so every command waits its KAFKAML_COMMAND_TIMEOUT_S (kept short) and is
answered 202: the run checks that answer too. The run is bounded (few examples per operation, a time
budget) to stay well under two minutes on a small machine.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.conftest import free_port, service_env

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


async def start_api(settings: Settings, run_service: Callable[..., subprocess.Popen[bytes]]) -> str:
    await ensure_topics(settings)
    port = free_port()
    env = service_env(settings, database=True) | {
        "KAFKAML_API_PORT": str(port),
        "KAFKAML_API_TOKEN": TOKEN,
        "KAFKAML_COMMAND_TIMEOUT_S": "0.5",
        "KAFKAML_LOG_LEVEL": "WARNING",
    }
    run_service("services.api", env, name="api")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(base + "/api/v1/health")).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not become healthy"
            await asyncio.sleep(0.5)


def schemathesis(base: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
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
        "60",
        "--workers",
        "4",
        "--seed",
        "8",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--no-color",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=110, check=False)


async def test_every_answer_is_declared(
    settings: Settings, run_service: Callable[..., subprocess.Popen[bytes]]
) -> None:
    base = await start_api(settings, run_service)
    run = await asyncio.to_thread(schemathesis, base)
    print(run.stdout[-6000:])  # the summary, for the log of the run
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
