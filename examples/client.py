"""A small REST client for the examples: reads the running stack from stack.json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx


def stack_info(home: str | None = None) -> dict[str, Any]:
    path = Path(home or os.environ.get("KAFKAML_HOME", ".kafkaml")) / "stack.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: start the stack first with `kafkaml up --detach`")
    info: dict[str, Any] = json.loads(path.read_text())
    return info


class Client:
    def __init__(self, info: dict[str, Any]) -> None:
        self.http = httpx.Client(
            base_url=info["api_url"] + "/api/v1",
            headers={"Authorization": f"Bearer {info['token']}"},
            timeout=120,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.http.request(method, path, **kwargs)
        if answer.status_code >= 400:
            raise SystemExit(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json() if answer.content and answer.headers.get("content-type", "").endswith("json") else answer

    def create_model(self, name: str, framework: str, code: str, imports: str = "", **extra: Any) -> dict[str, Any]:
        body = {"name": name, "framework": framework, "code": code, "imports": imports, **extra}
        model: dict[str, Any] = self.call("POST", "/models", json=body)
        return model

    def wait_for_results(
        self, deployment_id: int, *, timeout_s: float = 900, on_update: Any = None
    ) -> list[dict[str, Any]]:
        """Polls until every result of the deployment is finished, failed or stopped."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            results: list[dict[str, Any]] = self.call("GET", "/results", params={"deployment_id": deployment_id})
            if on_update:
                on_update(results)
            if results and all(r["status"] in ("finished", "failed", "stopped") for r in results):
                return results
            time.sleep(1)
        raise SystemExit(f"deployment {deployment_id} did not finish within {timeout_s:.0f} s")
