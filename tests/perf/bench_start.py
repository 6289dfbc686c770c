"""Time to the first epoch: a deployment created → its first epoch, and → finished, on a warm stack.

    .venv/bin/python tests/perf/bench_start.py              # 5 runs on a warm stack
    .venv/bin/python tests/perf/bench_start.py --cold       # the same with no warm trainers

A stack is started with ``kafkaml up --detach`` in a temporary ``KAFKAML_HOME`` (always
``kafkaml down`` at the end), and left to settle: its warm TensorFlow trainer has
imported TensorFlow (``KAFKAML_TRAINER_WARM``; ``--cold`` turns it off). The model is
upstream's digits model (``examples/models/keras_digits.py``), 10 epochs, batch 32, as
in ``make demo``.

Each run: the data is sent *before* the deployment (scikit-learn's 1,797 digits with
the RawSink, its control message keyed by the id the next deployment gets), and the
control logger has recorded it, so the orchestrator hands the announcement to the
trainer in its spec. Then the clock starts and ``POST /api/v1/deployments`` is sent.
Read from the events topic (each event's broker timestamp against the wall clock at
the POST): the trainer's first ``TrainingProgress`` (it runs), its first
``EpochCompleted``, and ``ResultStored`` (the orchestrator then says ``finished``).
Between runs the launcher's fresh warm trainer is waited for.

Target: the first epoch less than 3 s after the POST, p50 over the runs. Printed: a
table per run, the medians, and whether the target holds. Exit status 1 when it does
not. Not collected by pytest (``norecursedirs``). On a shared two-core machine the
figures are noisy: the medians are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sklearn.datasets import load_digits

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from shared.datasources import RawSink  # noqa: E402
from shared.events import EpochCompleted, ResultStored, TrainingFailed, TrainingProgress, decode  # noqa: E402
from shared.kafka import make_consumer  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topics import topics_for  # noqa: E402

TARGET_S = 3.0
EPOCHS = 10
MODEL_CODE = (REPO / "examples" / "models" / "keras_digits.py").read_text()


def kafkaml(home: Path, *args: str, timeout: float = 300) -> int:
    env = {**os.environ, "KAFKAML_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.call([sys.executable, "-m", "shared.cli", *args], env=env, timeout=timeout)


class Api:
    def __init__(self, info: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {info['token']}"}
        self.http = httpx.Client(base_url=info["api_url"] + "/api/v1", headers=headers, timeout=120)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The answer of a mutation; a 202 is followed until the command ends."""
        answer = self.http.request(method, path, json=body)
        if answer.status_code == 202:
            location = answer.headers["Location"].removeprefix("/api/v1")
            while (state := self.http.get(location).json())["status"] == "pending":
                time.sleep(0.2)
            if state["status"] != "succeeded":
                raise SystemExit(f"{method} {path}: {state}")
            return state["outcome"].get("payload", state["outcome"])
        if answer.status_code >= 300:
            raise SystemExit(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json()


def warm_ready(home: Path) -> bool:
    """A warm TensorFlow trainer that imported TensorFlow and waits for a spec."""
    return any(
        "waiting for a job spec" in path.read_text(errors="replace")
        and "spec received" not in path.read_text(errors="replace")
        for path in (home / "logs" / "jobs").glob("trainer-warm-tensorflow-*.log")
    )


def wait(what: str, check: Any, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


async def follow(settings: Settings, result_id: int, posted_ms: int, timeout_s: float = 300) -> dict[str, float]:
    """Seconds from the POST to each milestone of the result, from the events topic."""
    consumer = make_consumer(settings, topics_for(settings).events, group_id=None)
    await consumer.start()
    seen: dict[str, float] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while "finished" not in seen:
            if time.monotonic() > deadline:
                raise SystemExit(f"result {result_id}: {seen} after {timeout_s:.0f} s")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    message = decode(record.value)
                    if getattr(message.payload, "result_id", None) != result_id:
                        continue
                    at = (record.timestamp - posted_ms) / 1000
                    if isinstance(message, TrainingFailed):
                        raise SystemExit(f"result {result_id} failed: {message.payload.error}")
                    if isinstance(message, TrainingProgress):
                        seen.setdefault("trainer running", at)
                        seen.setdefault(message.payload.phase, at)
                    elif isinstance(message, EpochCompleted):
                        seen.setdefault("first epoch", at)
                    elif isinstance(message, ResultStored):
                        seen["finished"] = at
    finally:
        await consumer.stop()
    return seen


def run_once(api: Api, settings: Settings, configuration_id: int, images: np.ndarray[Any, Any], labels: Any) -> Any:
    deployments = api.ok("GET", "/deployments")
    next_id = max((d["id"] for d in deployments), default=0) + 1
    with RawSink(
        settings.brokers, "bench-start-digits", next_id, data_type="uint8", label_type="uint8", data_reshape="8 8",
        label_reshape="1", validation_rate=0.1, test_rate=0.1, control_topic=settings.control_topic,
    ) as sink:  # fmt: skip
        for image, label in zip(images, labels, strict=True):
            sink.send(image, label)
    wait(
        "the data source to be recorded",
        lambda: any(d["deployment_id"] == next_id for d in api.ok("GET", "/datasources")),
    )
    body = {"configuration_id": configuration_id, "batch_size": 32, "fit": {"epochs": EPOCHS}}
    posted_ms = int(time.time() * 1000)
    deployment = api.ok("POST", "/deployments", body)
    if deployment["id"] != next_id:
        raise SystemExit(f"deployment {deployment['id']} is not the {next_id} the data was sent for")
    return asyncio.run(follow(settings, deployment["results"][0]["id"], posted_ms))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="no warm trainers (KAFKAML_TRAINER_WARM=)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kml-bench-start-", dir="/tmp"))
    if args.cold:
        os.environ["KAFKAML_TRAINER_WARM"] = ""
    digits = load_digits()
    images, labels = digits.images.astype(np.uint8), digits.target.astype(np.uint8)
    rows: list[dict[str, float]] = []
    try:
        started = time.monotonic()
        if kafkaml(home, "up", "--detach") != 0:
            print(f"the stack did not start; see {home}/logs")
            return 1
        info = json.loads((home / "stack.json").read_text())
        print(f"stack up in {time.monotonic() - started:.1f} s ({home})")
        settings = Settings(bootstrap_servers=info["bootstrap_servers"], home=home)
        api = Api(info)
        model = api.ok("POST", "/models", {"name": "digits", "framework": "tensorflow", "code": MODEL_CODE})
        configuration = api.ok("POST", "/configurations", {"name": "digits", "model_ids": [model["id"]]})
        for number in range(1, args.runs + 1):
            if not args.cold:
                wait("a warm TensorFlow trainer", lambda: warm_ready(home))
            rows.append(run_once(api, settings, configuration["id"], images, labels))
            print(f"run {number}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rows[-1].items()), flush=True)
    finally:
        kafkaml(home, "down", timeout=120)

    columns = ["trainer running", "waiting_data", "reading_data", "training", "first epoch", "finished"]
    print()
    print(f"seconds from POST /deployments ({'cold' if args.cold else 'warm'} trainers):")
    print(f"  {'run':<6}" + "".join(f"{c:>17}" for c in columns))
    for number, found in enumerate(rows, 1):
        print(f"  {number:<6}" + "".join(f"{found[c]:>17.2f}" if c in found else f"{'-':>17}" for c in columns))
    medians = {c: statistics.median(r[c] for r in rows) for c in columns if all(c in r for r in rows)}
    print(f"  {'p50':<6}" + "".join(f"{medians[c]:>17.2f}" if c in medians else f"{'-':>17}" for c in columns))
    holds = medians["first epoch"] < TARGET_S
    print()
    print(f"{'measure':<40}{'p50':>8}  target")
    print(f"{'deployment created → first epoch':<40}{medians['first epoch']:>7.2f}s  < {TARGET_S:g} s: "
          f"{'holds' if holds else 'does not hold'}")  # fmt: skip
    print(f"{'deployment created → finished':<40}{medians['finished']:>7.2f}s  (reported)")
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
