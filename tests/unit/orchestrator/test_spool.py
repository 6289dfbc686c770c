"""The spool hand-over: what the orchestrator writes (owner-only, whole), what the runner takes,
stops and reports back, and that a runner holding a credential refuses to start. The runner's
local launcher is replaced by a recorder here; the real processes are the integration test's."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from services.orchestrator.launchers import make_launcher
from services.orchestrator.launchers.spool import SpoolLauncher, decode, encode
from services.orchestrator.launchers.spool_runner import Runner
from shared.events.inference import ServeSpec
from shared.events.training import JobSpec
from shared.settings import Settings
from tests.unit.fakes import job_spec, serve_spec


class Recorder:
    """Stands in for the runner's local launcher: records the calls, runs nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.units: dict[str, list[Any]] = {}

    async def launch_training(self, spec: JobSpec) -> None:
        self.calls.append(("training", spec.job_id))

    async def launch_inference(self, spec: ServeSpec) -> None:
        self.calls.append(("inference", spec.job_id))

    async def stop(self, job_id: str) -> None:
        self.calls.append(("stop", job_id))

    async def prewarm(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Ended:
    alive = False
    restart = False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", spool_dir=tmp_path / "spool", trainer_warm="")


def runner(settings: Settings) -> tuple[Runner, Recorder]:
    made = Runner(settings)
    recorder = Recorder()
    made.launcher = recorder  # type: ignore[assignment]  # the recorder has the calls the runner makes
    return made, recorder


async def no_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
    raise AssertionError(f"unexpected failure of {spec.job_id}: {reason}")


def test_the_setting_selects_the_spool_launcher(settings: Settings) -> None:
    launcher = make_launcher(settings.model_copy(update={"launcher": "spool"}), no_failure)
    assert isinstance(launcher, SpoolLauncher) and launcher.folder == settings.spool_dir
    default = SpoolLauncher(Settings(home=Path("/state")), no_failure)
    assert default.folder == Path("/state/spool")


async def test_a_spec_is_written_owner_only_once_and_a_pending_one_is_withdrawn(settings: Settings) -> None:
    launcher = SpoolLauncher(settings, no_failure)
    try:
        spec = job_spec("job-a", 1, 2)
        await launcher.launch_training(spec)
        await launcher.launch_training(spec)  # idempotent
        written = settings.spool_dir / "job-a.spec"  # type: ignore[operator]
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
        assert decode(json.loads(written.read_text())) == spec  # the key travels with it, to the runner only
        assert [p.name for p in written.parent.iterdir() if p.is_file()] == ["job-a.spec"]  # no partial left
        await launcher.launch_inference(serve_spec("inf-b"))
        assert await launcher.running() == {"job-a", "inf-b"}
        # Not taken yet: a stop withdraws it, and there is nothing for the runner to stop.
        await launcher.stop("job-a")
        assert await launcher.running() == {"inf-b"} and not written.exists()
        assert not list(written.parent.glob("*.stop"))
        # reconcile: stops what is not wanted, returns what is wanted and not handed over.
        assert await launcher.reconcile(["job-c"]) == {"job-c"}
        assert await launcher.running() == set()
    finally:
        await launcher.close()


async def test_the_runner_takes_starts_stops_and_forgets_ended_jobs(settings: Settings) -> None:
    launcher = SpoolLauncher(settings, no_failure)
    made, recorder = runner(settings)
    try:
        await launcher.launch_training(job_spec("job-a"))
        await launcher.launch_inference(serve_spec("inf-b"))
        (made.folder / "junk.spec").write_text("{not json")
        await made.step()
        assert sorted(recorder.calls) == [("inference", "inf-b"), ("training", "job-a")]
        assert sorted(p.name for p in made.taken.iterdir()) == ["inf-b.spec", "job-a.spec"]
        assert not list(made.folder.glob("*.spec"))  # taken, and the junk dropped
        assert await launcher.running() == {"job-a", "inf-b"}  # taken counts as running

        # A taken job is stopped through a stop file, which the runner removes with the job.
        await launcher.stop("inf-b")
        assert await launcher.running() == {"job-a"}
        await made.step()
        assert ("stop", "inf-b") in recorder.calls
        assert not list(made.folder.glob("*.stop")) and await launcher.running() == {"job-a"}

        # A trainer that ended (having reported) is forgotten: no longer running.
        recorder.units["job-a"] = [Ended()]
        await made.step()
        assert await launcher.running() == set() and "job-a" not in recorder.units
    finally:
        await launcher.close()


async def test_a_failure_reaches_the_orchestrator_with_its_spec_and_reason(settings: Settings) -> None:
    reported: list[tuple[JobSpec | ServeSpec, str]] = []

    async def on_failure(spec: JobSpec | ServeSpec, reason: str) -> None:
        reported.append((spec, reason))

    launcher = SpoolLauncher(settings, on_failure)
    made, _ = runner(settings)
    try:
        spec = job_spec("job-a", 7)
        await launcher.launch_training(spec)
        await made.step()
        await made.failed(spec, "the trainer process was killed by signal 9")
        failed = made.folder / "job-a.failed"
        assert stat.S_IMODE(failed.stat().st_mode) == 0o600
        assert await launcher.running() == set()  # the runner no longer has it
        (made.folder / "bad.failed").write_text("[]")  # unreadable: dropped, the others still read
        await launcher.report_failures()
        assert reported == [(spec, "the trainer process was killed by signal 9")]
        assert not list(made.folder.glob("*.failed"))
    finally:
        await launcher.close()


async def test_a_restarted_runner_starts_again_what_it_had_taken(settings: Settings) -> None:
    first, _ = runner(settings)
    (first.taken / "job-a.spec").write_text(json.dumps(encode(job_spec("job-a"))))
    second, recorder = runner(settings)
    await second.start()
    assert recorder.calls == [("training", "job-a")]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("database_url", "postgresql://kafkaml:secret@postgres/kafkaml"),
        ("api_token", "token"),
        ("bus_key", "key"),
    ],
)
def test_a_runner_that_holds_a_credential_refuses_to_start(settings: Settings, setting: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"KAFKAML_{setting.upper()} is set") as refused:
        Runner(settings.model_copy(update={setting: value}))
    assert value not in str(refused.value)


def test_a_spool_file_of_another_kind_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="kind"):
        decode({"kind": "shell", "spec": {}})
