"""End to end against a broker that requires SASL/SCRAM over TLS (`kafkaml up --kafka-security sasl-ssl`).

Every Kafka client of the project logs in: the services (faust and aiokafka), the validator,
a trainer and an inferencer (from the workers' environment), `kafkaml send` (from stack.json),
and this test's own clients. A service given a wrong password refuses to start, saying why
without the password. Short on purpose: 300 samples, 2 epochs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sklearn.datasets import load_digits

from shared.kafka_security import KafkaSecurity, security_options
from tests.conftest import REPO, free_port
from tests.e2e.client import ok, until
from tests.e2e.test_stack import KERAS, kafkaml

pytestmark = pytest.mark.e2e

DIGITS = load_digits()
IMAGES = DIGITS.images.astype(np.uint8)[:300]
LABELS = DIGITS.target.astype(np.uint8)[:300]


class Stack:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="kml-e2e-secured-", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKAML_")}
        self.env.update(KAFKAML_HOME=str(self.home), KAFKAML_API_PORT=str(free_port()))
        up = kafkaml(self.env, "up", "--detach", "--kafka-security", "sasl-ssl")
        assert up.returncode == 0, f"kafkaml up failed:\n{up.stdout}\n{up.stderr}"
        self.info: dict[str, Any] = json.loads((self.home / "stack.json").read_text())
        self.security = KafkaSecurity.from_mapping(self.info["kafka_security"])
        headers = {"Authorization": f"Bearer {self.info['token']}"}
        self.http = httpx.Client(base_url=self.info["api_url"] + "/api/v1", headers=headers, timeout=60)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return ok(self.http, method, path, body)

    def until(self, path: str, ready: Callable[[Any], bool], timeout_s: float = 240) -> Any:
        return until(self.http, path, ready, timeout_s)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        yield stack
    finally:
        stack.http.close()
        kafkaml(stack.env, "down", timeout=120)


def test_clients_must_log_in_and_a_wrong_password_stops_a_service_saying_why(stack: Stack) -> None:
    security = stack.security
    assert (security.security_protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert security.sasl_password and Path(str(security.ssl_cafile)).is_file()
    assert stat.S_IMODE((stack.home / "stack.json").stat().st_mode) == 0o600

    wrong = "not-the-Password-42"
    env = {k: v for k, v in stack.env.items() if k != "KAFKAML_HOME"}
    env.update(
        PYTHONPATH=str(REPO),
        KAFKAML_BOOTSTRAP_SERVERS=stack.info["bootstrap_servers"],
        KAFKAML_DATABASE_URL=stack.info["database_url"],
        KAFKAML_SECURITY_PROTOCOL="SASL_SSL",
        KAFKAML_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKAML_SASL_USERNAME=str(security.sasl_username),
        KAFKAML_SASL_PASSWORD=wrong,
        KAFKAML_SSL_CAFILE=str(security.ssl_cafile),
    )
    started = time.monotonic()
    refused = subprocess.run(
        [sys.executable, "-m", "services.metrics"], env=env, capture_output=True, text=True, timeout=90
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    assert time.monotonic() - started < 60
    assert "refused" in output and "SCRAM-SHA-512 as kafkaml" in output and "KAFKAML_SASL_PASSWORD" in output, output
    assert wrong not in output and str(security.sasl_password) not in output

    # Without TLS, or with TLS but no login, the broker answers nothing.
    no_login = dataclasses.replace(security, security_protocol="SSL", sasl_username=None, sasl_password=None)
    for bad in (KafkaSecurity(), no_login):
        assert not asyncio.run(can_produce(stack.info["bootstrap_servers"], bad)), bad


async def can_produce(bootstrap: str, security: KafkaSecurity) -> bool:
    options = security_options(security)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, **options)
    try:
        await asyncio.wait_for(producer.start(), 15)
        await producer.send_and_wait("secured-probe", b"x")
        return True
    except Exception:
        return False
    finally:
        await producer.stop()


async def predictions(stack: Stack, source: str, sink: str, count: int, timeout_s: float = 90) -> int:
    options = security_options(stack.security)
    bootstrap = stack.info["bootstrap_servers"]
    consumer = AIOKafkaConsumer(sink, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **options)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
    await consumer.start()
    await producer.start()
    try:
        for image in IMAGES[:count]:
            await producer.send(source, image.tobytes())
        await producer.flush()
        seen = 0
        deadline = time.monotonic() + timeout_s
        while seen < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += sum(1 for r in records if "values" in json.loads(r.value))
        return seen
    finally:
        await producer.stop()
        await consumer.stop()


def test_digits_train_and_serve_over_sasl_ssl(stack: Stack, tmp_path: Path) -> None:
    model = stack.ok("POST", "/models", {"name": "digits", "framework": "tensorflow", "code": KERAS})
    configuration = stack.ok("POST", "/configurations", {"name": "c", "model_ids": [model["id"]]})
    deployment = stack.ok("POST", "/deployments", {"configuration_id": configuration["id"], "fit": {"epochs": 2}})

    data = tmp_path / "digits.npz"
    np.savez(data, x=IMAGES, y=LABELS)
    sent = kafkaml(
        stack.env, "send", str(data), "--deployment-id", str(deployment["id"]), "--topic", "secured-digits",
        "--data-type", "uint8", "--label-type", "uint8", "--partitions", "2",
    )  # fmt: skip
    assert sent.returncode == 0, f"kafkaml send failed:\n{sent.stdout}\n{sent.stderr}"

    result = deployment["results"][0]["id"]
    finished = stack.until(f"/results/{result}", lambda r: r["status"] in ("finished", "failed", "stopped"))
    assert finished["status"] == "finished", finished
    assert finished["samples"]["train"] == 240 and finished["test_metrics"], finished
    assert {len(curve) for curve in finished["train_metrics"].values()} == {2}, finished

    inference = stack.ok(
        "POST", "/inferences", {"result_id": result, "input_topic": "secured-in", "output_topic": "secured-out"}
    )
    stack.until(f"/inferences/{inference['id']}", lambda i: i["status"] == "running", timeout_s=120)
    assert asyncio.run(predictions(stack, "secured-in", "secured-out", 20)) == 20

    # The replicas (this stack's: they work in its workers' folder) log in as the workers' own
    # user, and hold nothing of the services' login.
    work = f"kafkaml-work-{hashlib.sha256(str(stack.home.resolve()).encode()).hexdigest()[:12]}"
    replicas = [
        p for p in psutil.process_iter(["cmdline", "cwd"])
        if "services.inferencer" in (p.info["cmdline"] or []) and "shared.confine" not in (p.info["cmdline"] or [])
        and work in (p.info["cwd"] or "")
    ]  # fmt: skip
    assert replicas
    for replica in replicas:
        environment = replica.environ()
        assert environment["KAFKAML_SASL_USERNAME"] == "kafkaml-worker", environment.get("KAFKAML_SASL_USERNAME")
        assert str(stack.security.sasl_password) not in " ".join(environment.values())
