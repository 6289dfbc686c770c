"""End to end: `kafkaml up --detach` on a fresh home, then the REST API as a user calls it,
then `kafkaml down` leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, free_port, stack_processes

pytestmark = pytest.mark.e2e

# Upstream Kafka-ML's README models with 8x8 inputs, as users write them.
MODELS = REPO / "examples" / "models"
KERAS = (MODELS / "keras_digits.py").read_text()
PYTORCH = (MODELS / "pytorch_digits.py").read_text()
PYTORCH_IMPORTS = "import torch\nimport torch.nn as nn\nfrom ignite.metrics import Accuracy, Loss\n"


def kafkaml(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    home = Path(tempfile.mkdtemp(prefix="kml-e2e-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKAML_")}
    env.update(KAFKAML_HOME=str(home), KAFKAML_API_PORT=str(free_port()))
    started = time.monotonic()
    up = kafkaml(env, "up", "--detach")
    assert up.returncode == 0, f"kafkaml up failed:\n{up.stdout}\n{up.stderr}"
    info = json.loads((home / "stack.json").read_text())
    info.update(home=home, env=env, up_seconds=time.monotonic() - started)
    try:
        yield info
    finally:
        # test_down_leaves_no_process stops it; this is the safety net when a test failed first.
        kafkaml(env, "down", timeout=120)


@pytest.fixture(scope="module")
def api(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack['token']}"}
    with httpx.Client(base_url=stack["api_url"] + "/api/v1", headers=headers, timeout=60) as client:
        yield client


def test_up_writes_stack_json_and_health_is_ok(stack: dict[str, Any]) -> None:
    for key in ("api_url", "bootstrap_servers", "database_url", "token"):
        assert stack[key], key
    assert oct((stack["home"] / "stack.json").stat().st_mode & 0o777) == "0o600"
    health = httpx.get(stack["api_url"] + "/api/v1/health", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "kafka": "ok", "database": "ok"}
    status = kafkaml(stack["env"], "status")
    assert status.returncode == 0, status.stdout + status.stderr


def test_routes_need_the_token(stack: dict[str, Any]) -> None:
    base = stack["api_url"] + "/api/v1"
    for method, path in (("GET", "/models"), ("POST", "/models"), ("GET", "/configurations"), ("DELETE", "/models/1")):
        answer = httpx.request(method, base + path, timeout=10)
        assert answer.status_code == 401, (method, path)
        assert answer.headers["content-type"].startswith("application/problem+json")
    wrong = httpx.get(base + "/models", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert httpx.get(stack["api_url"] + "/openapi.json", timeout=10).status_code == 200


def test_keras_model_is_validated_and_summarized_within_10_s(api: httpx.Client) -> None:
    body = {"name": "digits-keras", "framework": "tensorflow", "code": KERAS}
    first = api.post("/models", json=body)
    assert first.status_code == 201, first.text
    started = time.monotonic()
    answer = api.post("/models", json=body | {"name": "digits-keras-2"})
    elapsed = time.monotonic() - started
    assert answer.status_code == 201, answer.text
    assert elapsed < 10, f"took {elapsed:.1f}s on a warm stack"
    summary = answer.json()["summary"]
    assert summary["parameters"] == 9610
    assert summary["input_shapes"] == [[None, 8, 8]] and summary["output_shapes"] == [[None, 10]]
    assert [layer["type"] for layer in summary["layers"]] == ["Flatten", "Dense", "Dense"]
    fetched = api.get(f"/models/{answer.json()['id']}")
    assert fetched.status_code == 200 and fetched.json()["summary"]["parameters"] == 9610


def test_pytorch_model_is_accepted(api: httpx.Client) -> None:
    answer = api.post(
        "/models", json={"name": "digits-torch", "framework": "pytorch", "code": PYTORCH, "imports": PYTORCH_IMPORTS}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["summary"]["parameters"] == 9610


def test_unclosed_bracket_answers_422_naming_the_line(api: httpx.Client) -> None:
    code = "model = tf.keras.models.Sequential([\n  tf.keras.layers.Dense(10),\n\nmodel.compile()\n"
    answer = api.post("/models", json={"name": "broken", "framework": "tensorflow", "code": code})
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["field"] == "code" and problem["line"] == 1
    assert "line 1" in problem["detail"]


def test_an_error_holding_nul_characters_answers_422_and_the_next_model_is_created(api: httpx.Client) -> None:
    code = 'raise RuntimeError("bad\\x00byte from\\x00 user code")\n'
    started = time.monotonic()
    answer = api.post("/models", json={"name": "nul", "framework": "tensorflow", "code": code})
    assert answer.status_code == 422, answer.text
    assert time.monotonic() - started < 20, "a refusal holding NUL must not wait for the 202 timeout"
    detail = answer.json()["detail"]
    assert "bad\ufffdbyte from\ufffd user code" in detail and "\x00" not in detail, detail
    model = {"name": "fine", "framework": "pytorch", "code": PYTORCH, "imports": PYTORCH_IMPORTS}
    after = api.post("/models", json=model)
    assert after.status_code == 201, after.text


DEEP_PYTORCH = """
class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Flatten(), *[nn.Identity() for _ in range(14000)], nn.Linear(64, 10))

    def forward(self, x):
        return self.blocks(x)

    def loss_fn(self):
        return nn.CrossEntropyLoss()

    def optimizer(self):
        return torch.optim.Adam(self.parameters(), lr=0.001)

    def metrics(self):
        return {"accuracy": Accuracy()}


model = Deep()
"""


def test_a_command_larger_than_a_kafka_message_answers_413(api: httpx.Client) -> None:
    code = "\n" * 600_000 + "model = 1\n"  # 1.2 MB once JSON escapes the newlines
    answer = api.post("/models", json={"name": "huge", "framework": "pytorch", "code": code})
    assert answer.status_code == 413, answer.text
    assert "KAFKAML_MESSAGE_MAX_BYTES" in answer.json()["detail"]


def test_a_model_whose_summary_exceeds_the_message_limit_is_refused_and_the_next_is_created(
    api: httpx.Client,
) -> None:
    started = time.monotonic()
    answer = api.post(
        "/models", json={"name": "deep", "framework": "pytorch", "code": DEEP_PYTORCH, "imports": PYTORCH_IMPORTS}
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 422, answer.text
    assert "too large to send" in answer.json()["detail"]
    print(f"a 14,002-layer model refused in {elapsed:.1f} s")
    assert elapsed < 15, f"took {elapsed:.1f} s"
    model = {"name": "after-deep", "framework": "pytorch", "code": PYTORCH, "imports": PYTORCH_IMPORTS}
    assert api.post("/models", json=model).status_code == 201


def test_pytorch_model_without_training_hooks_is_refused(api: httpx.Client) -> None:
    code = "class N(nn.Module):\n    def forward(self, x):\n        return x\nmodel = N()\n"
    answer = api.post("/models", json={"name": "bare", "framework": "pytorch", "code": code})
    assert answer.status_code == 422
    assert all(word in answer.json()["detail"] for word in ("loss_fn", "optimizer", "metrics"))


def test_bad_fields_are_named(api: httpx.Client) -> None:
    answer = api.post("/models", json={"name": "x", "framework": "sklearn", "code": "model = 1"})
    assert answer.status_code == 422 and answer.json()["field"] == "framework"


def test_model_in_use_cannot_be_deleted(api: httpx.Client) -> None:
    model = api.post("/models", json={"name": "used", "framework": "tensorflow", "code": KERAS}).json()
    configuration = api.post("/configurations", json={"name": "c", "model_ids": [model["id"]]})
    assert configuration.status_code == 201, configuration.text
    assert configuration.json()["model_ids"] == [model["id"]]
    conflict = api.delete(f"/models/{model['id']}")
    assert conflict.status_code == 409 and str(configuration.json()["id"]) in conflict.json()["detail"]
    assert api.delete(f"/configurations/{configuration.json()['id']}").status_code == 204
    assert api.delete(f"/models/{model['id']}").status_code == 204
    assert api.get(f"/models/{model['id']}").status_code == 404


def test_distributed_chain_comes_with_its_top_model(api: httpx.Client) -> None:
    top = api.post("/models", json={"name": "cloud", "framework": "tensorflow", "code": KERAS}).json()
    edge = api.post(
        "/models", json={"name": "edge", "framework": "tensorflow", "code": KERAS, "upper_model_id": top["id"]}
    ).json()
    configuration = api.post("/configurations", json={"name": "chain", "model_ids": [top["id"]]})
    assert configuration.status_code == 201
    assert configuration.json()["model_ids"] == sorted([top["id"], edge["id"]])
    assert api.post("/configurations", json={"name": "x", "model_ids": [edge["id"]]}).status_code == 422


def test_down_leaves_no_process(stack: dict[str, Any]) -> None:
    down = kafkaml(stack["env"], "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    time.sleep(1)
    assert stack_processes(stack["home"]) == []
    assert not (stack["home"] / "stack.json").exists()
