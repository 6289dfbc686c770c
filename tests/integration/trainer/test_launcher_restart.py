"""The local launcher starts a crashed incremental trainer again with the same spec (it resumes from its
checkpoint), as it does inference replicas; a bounded trainer is not restarted (its results fail)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.orchestrator.launchers.local import LocalLauncher
from shared.events.inference import ServeSpec
from shared.events.training import IncrementalParams, JobModel, JobSpec
from shared.settings import Settings
from shared.stack.broker import Broker

pytestmark = pytest.mark.integration


def job(job_id: str, incremental: IncrementalParams | None) -> JobSpec:
    model = JobModel(result_id=1, model_id=1, name="m", code="model = 1")
    return JobSpec.model_validate(
        {
            "job_id": job_id, "deployment_id": 1, "framework": "pytorch", "models": [model], "batch_size": 32,
            "fit": {}, "evaluate": {}, "confusion_matrix": False,
            "incremental": incremental.model_dump() if incremental else None,
        }
    )  # fmt: skip


async def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_crashed_incremental_trainer_is_started_again_a_bounded_one_fails(
    broker: Broker, tmp_path: Path
) -> None:
    failures: list[tuple[str, str]] = []

    async def on_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
        failures.append((spec.job_id, reason))

    # The trainers wait for a control message nobody sends: they live until killed.
    settings = Settings(bootstrap_servers=broker.bootstrap_servers, home=tmp_path, trainer_warm="")
    launcher = LocalLauncher(settings, on_failure, poll_s=0.1)
    try:
        await launcher.launch_training(job("online", IncrementalParams(window_samples=10)))
        await launcher.launch_training(job("bounded", None))
        [online], [bounded] = launcher.units["online"], launcher.units["bounded"]
        assert online.restart and not bounded.restart
        await wait_for("the spec", lambda: "spec received: job online" in online.log_path.read_text())
        first = online.process
        assert first is not None and bounded.process is not None
        os.killpg(first.pid, signal.SIGKILL)
        os.killpg(bounded.process.pid, signal.SIGKILL)
        await wait_for("the restart", lambda: online.process is not first and online.alive)
        await wait_for("the spec again", lambda: online.log_path.read_text().count("spec received: job online") == 2)
        await wait_for("the bounded failure", lambda: bool(failures))
        assert [job_id for job_id, _ in failures] == ["bounded"], failures
        assert "killed by signal 9" in failures[0][1]
        await launcher.stop("online")
        assert await launcher.running() == set()
    finally:
        await launcher.close()
