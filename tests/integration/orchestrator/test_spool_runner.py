"""The spool hand-over between two real processes: the orchestrator's spool launcher (here, in
the test) writes a job's spec; a runner process, started with no credential in its environment,
takes it and starts a real trainer from it. A trainer killed mid-run comes back to the
orchestrator side as a failure with its reason; a stop ends the trainer; a runner given a
database URL refuses to start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from services.orchestrator.launchers.spool import SpoolLauncher
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings
from shared.stack.broker import Broker
from tests.unit.fakes import job_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def runner_env(broker: Broker, home: Path, **extra: str) -> dict[str, str]:
    """What the compose file gives the runner: the workers' Kafka settings, nothing else."""
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),
        "KAFKAML_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKAML_HOME": str(home),
        "KAFKAML_TRAINER_WARM": "",
        **extra,
    }


@pytest.fixture
def runner(broker: Broker, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    home = tmp_path / "runner"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.orchestrator.launchers.spool_runner"],
        env=runner_env(broker, home),
        stdout=(tmp_path / "runner.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, (tmp_path / "runner.log").read_text()


async def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def trainers(runner: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The runner's workers: each a confinement supervisor, its process group's leader."""
    return [p for p in psutil.Process(runner.pid).children() if "services.trainer" in p.cmdline()]


async def test_the_runner_starts_a_trainer_from_a_spec_and_reports_its_end(
    runner: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    failures: list[tuple[str, str]] = []

    async def on_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
        failures.append((spec.job_id, reason))

    settings = Settings(home=tmp_path / "orchestrator", spool_dir=tmp_path / "runner" / "spool")
    launcher = SpoolLauncher(settings, on_failure, poll_s=0.1)
    logs = tmp_path / "runner" / "logs" / "jobs"
    try:
        # The trainer gets its spec and waits for data nobody sends: it lives until it is killed.
        await launcher.launch_training(job_spec("spooled", framework="pytorch"))
        log = logs / "trainer-spooled.log"
        await wait_for("the trainer's spec", lambda: log.exists() and "spec received: job spooled" in log.read_text())
        [trainer] = trainers(runner)
        [worker] = trainer.children()  # the trainer itself, below its supervisor
        environment = worker.environ()
        assert environment["KAFKAML_BOOTSTRAP_SERVERS"] and "KAFKAML_DATABASE_URL" not in environment
        assert await launcher.running() == {"spooled"}

        # Killed mid-run: the runner's report reaches the orchestrator's side with the reason.
        os.killpg(trainer.pid, signal.SIGKILL)
        await wait_for("the failure", lambda: bool(failures))
        assert failures[0][0] == "spooled" and "killed by signal 9" in failures[0][1]
        await wait_for("the job to be gone", lambda: not (settings.spool_dir / "taken" / "spooled.spec").exists())  # type: ignore[operator]

        # A stop ends a running trainer and reports nothing.
        await launcher.launch_training(job_spec("stopped"))
        stopped = logs / "trainer-stopped.log"
        await wait_for("the second spec", lambda: stopped.exists() and "spec received" in stopped.read_text())
        await launcher.stop("stopped")
        await wait_for("the stop", lambda: not trainers(runner))
        assert await launcher.running() == set() and len(failures) == 1
    finally:
        await launcher.close()


def test_a_runner_given_a_database_url_refuses_to_start(broker: Broker, tmp_path: Path) -> None:
    url = "postgresql://kafkaml:owner-secret@postgres/kafkaml"
    result = subprocess.run(
        [sys.executable, "-m", "services.orchestrator.launchers.spool_runner"],
        env=runner_env(broker, tmp_path, KAFKAML_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "KAFKAML_DATABASE_URL is set" in result.stderr
    assert "owner-secret" not in result.stderr + result.stdout
