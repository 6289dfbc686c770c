"""The API as a real process for integration tests: started with ``run_service``, healthy on return."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

import httpx

from shared.settings import Settings
from tests.conftest import free_port, service_env

StartService = Callable[..., subprocess.Popen[bytes]]


async def start_api(settings: Settings, run_service: StartService, token: str, **env: str) -> str:
    """Starts ``python -m services.api`` with ``token`` (and ``env``); its base URL once it is healthy."""
    port = free_port()
    variables = service_env(settings, database=True) | {"KAFKAML_API_PORT": str(port), "KAFKAML_API_TOKEN": token}
    run_service("services.api", variables | env, name="api")
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
