"""The local launcher with real worker processes: an unexpected end is reported with its reason,
a replica that crashes is started again, a stop reports nothing, a warm trainer takes the next
job (its spec on its standard input) and a fresh one takes its place."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from services.orchestrator.launchers.local import LocalLauncher
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings
from shared.stack.broker import Broker
from tests.unit.fakes import job_spec, serve_spec

pytestmark = pytest.mark.integration


def job(job_id: str, framework: str = "tensorflow", gpus: int = 0) -> JobSpec:
    return job_spec(job_id, framework=framework, gpus=gpus, code="model = 1")


def serving(job_id: str) -> ServeSpec:
    # PyTorch: a replica imports its framework as soon as it has its spec, and torch imports in
    # half TensorFlow's time; what is tested here is the launcher, not the framework.
    return serve_spec(job_id, framework="pytorch", artifact_format="pt")


@pytest.fixture
def launcher_settings(broker: Broker, tmp_path: Path) -> Settings:
    # The workers get their spec and wait for data (or a model) nobody sends: they live until
    # they are killed. No warm trainers here (each imports a framework): the test below has its own.
    return Settings(bootstrap_servers=broker.bootstrap_servers, home=tmp_path, trainer_warm="")


async def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_warm_trainer_takes_the_next_job_and_a_fresh_one_replaces_it(launcher_settings: Settings) -> None:
    failures: list[str] = []

    async def on_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
        failures.append(reason)

    settings = launcher_settings.model_copy(update={"trainer_warm": "pytorch"})
    launcher = LocalLauncher(settings, on_failure, poll_s=0.1)
    try:
        assert await launcher.reconcile([]) == set()  # at start-up: the warm trainers start
        warm = launcher.warm["pytorch"]
        await wait_for("the import", lambda: "waiting for a job spec" in warm.log_path.read_text(), 120)
        assert await launcher.running() == set()  # a warm process runs no job

        await launcher.launch_training(job("first", "pytorch"))
        [unit] = launcher.units["first"]
        assert unit.process is warm.process  # taken: no start, no import
        assert unit.log_path.name == "trainer-first.log" and warm.log_path == unit.log_path
        replacement = launcher.warm["pytorch"]
        assert replacement.process.pid != warm.process.pid
        await wait_for("the spec", lambda: "spec received: job first" in unit.log_path.read_text())
        assert "pytorch imported in" in unit.log_path.read_text()
        # Confined: the trainer runs below a supervisor, in a private working directory.
        assert unit.work_dir is not None and stat.S_IMODE(os.stat(unit.work_dir).st_mode) == 0o700
        [trainer] = psutil.Process(unit.process.pid).children()
        assert trainer.cwd() == unit.work_dir and "services.trainer" in trainer.cmdline()
        assert not unit.work_dir.startswith(str(settings.home))  # the state folder is hidden from workers
        assert "nothing hidden" not in unit.log_path.read_text() and "not hidden" not in unit.log_path.read_text()
        work_dir = unit.work_dir

        # The next job takes the replacement: a warm process never runs two jobs.
        await launcher.launch_training(job("second", "pytorch"))
        assert launcher.units["second"][0].process is replacement.process
        assert await launcher.running() == {"first", "second"}
        # A framework without a warm process starts cold, as before; so does a job with GPUs (a warm
        # trainer is set up for the CPU).
        await launcher.launch_training(job("cold", "tensorflow"))
        assert launcher.units["cold"][0].process not in (warm.process, replacement.process)
        third = launcher.warm["pytorch"]
        await launcher.launch_training(job("gpu", "pytorch", gpus=1))
        assert launcher.units["gpu"][0].process is not third.process and launcher.warm["pytorch"] is third
        await launcher.stop("gpu")

        await launcher.stop("first")
        assert warm.process.returncode is not None and await launcher.running() == {"second", "cold"}
        await wait_for("its working directory to go", lambda: not Path(work_dir).exists())
        # A warm process that dies while it waits is replaced when the next job comes.
        os.killpg(third.process.pid, signal.SIGKILL)
        await wait_for("the dead warm process to be dropped", lambda: "pytorch" not in launcher.warm)
        await launcher.launch_training(job("fourth", "pytorch"))
        assert launcher.units["fourth"][0].process is not third.process and launcher.units["fourth"][0].alive
        assert "pytorch" in launcher.warm
    finally:
        last = launcher.warm.get("pytorch")
        await launcher.close()
    # kafkaml down: the jobs and the warm process end, and nothing is reported.
    assert last is not None and last.process.returncode is not None
    assert await launcher.running() == set() and failures == []
    assert list(launcher.work.iterdir()) == []  # every private working directory removed


async def test_a_trainer_killed_mid_run_fails_its_results_with_the_reason(launcher_settings: Settings) -> None:
    failures: list[tuple[str, str]] = []

    async def on_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
        failures.append((spec.job_id, reason))

    launcher = LocalLauncher(launcher_settings, on_failure, poll_s=0.1)
    await launcher.launch_training(job("killed"))
    await launcher.launch_training(job("killed"))  # idempotent: still one process
    assert len(launcher.units["killed"]) == 1 and await launcher.running() == {"killed"}
    process = launcher.units["killed"][0].process
    assert process is not None
    await asyncio.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)
    for _ in range(100):
        if failures:
            break
        await asyncio.sleep(0.1)
    assert failures and failures[0][0] == "killed"
    assert "killed by signal 9" in failures[0][1] and "trainer" in failures[0][1]

    # A stop is not a failure.
    await launcher.launch_training(job("stopped"))
    await asyncio.sleep(1)
    await launcher.stop("stopped")
    await asyncio.sleep(0.5)
    assert [f for f in failures if f[0] == "stopped"] == []
    assert await launcher.running() == set()
    await launcher.close()


async def test_over_its_memory_limit_a_trainer_is_killed_and_says_so(launcher_settings: Settings) -> None:
    failures: list[str] = []

    async def on_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
        failures.append(reason)

    launcher = LocalLauncher(launcher_settings, on_failure, memory_mb=1, poll_s=0.1)
    await launcher.launch_training(job("hungry"))
    for _ in range(100):
        if failures:
            break
        await asyncio.sleep(0.1)
    assert failures and "over its memory limit of 1 MB" in failures[0]
    await launcher.close()


async def test_a_crashed_replica_is_started_again(launcher_settings: Settings) -> None:
    failures: list[str] = []

    async def on_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
        failures.append(reason)

    launcher = LocalLauncher(launcher_settings, on_failure, poll_s=0.1)
    await launcher.launch_inference(serving("served").model_copy(update={"replicas": 2}))
    units = launcher.units["served"]
    assert len(units) == 2
    first = units[0].process
    assert first is not None
    await asyncio.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)
    for _ in range(50):
        if units[0].process is not first and units[0].alive:
            break
        await asyncio.sleep(0.1)
    assert units[0].process is not first and units[0].alive, "the replica was started again"
    assert failures == []
    await launcher.stop("served")
    assert await launcher.running() == set()
    await launcher.close()
