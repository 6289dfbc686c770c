"""The supervisor (restarts, back-off, shutdown, logs), plus what children may see and the state files."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.stack.processes import is_alive
from shared.stack.runner import SERVICES, ServiceDef, is_secret_setting, service_env
from shared.stack.stackfile import StackFile, StackLockedError, UpLock, holder_pid, read_stack, write_stack
from shared.stack.supervisor import Backoff, ChildSpec, Supervisor

pytestmark = pytest.mark.timeout(60)


def child(tmp_path: Path, name: str, code: str) -> ChildSpec:
    return ChildSpec(name=name, argv=[sys.executable, "-c", code], log_path=tmp_path / "logs" / f"{name}.log")


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- restarts and back-off ----------------------------------------------------


async def test_a_crashing_child_is_restarted_with_doubling_delays(tmp_path: Path) -> None:
    spec = child(tmp_path, "crasher", "import sys; print('ali' + 've', flush=True); sys.exit(3)")
    sup = Supervisor(backoff=Backoff(initial=0.1, maximum=0.4, reset_after=60))
    started = time.monotonic()
    await sup.start(spec)
    try:
        await eventually(lambda: sup.starts()["crasher"] >= 5)
    finally:
        await sup.stop()
    elapsed = time.monotonic() - started
    delays = sup.restart_delays("crasher")
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4]  # doubling, capped at the maximum
    assert elapsed >= sum(delays[:4])  # the delays were really waited
    text = spec.log_path.read_text()
    assert text.count("alive") >= 4
    assert "start #1 of crasher" in text and "start #4 of crasher" in text


async def test_the_back_off_resets_after_a_child_stayed_up(tmp_path: Path) -> None:
    # Up 0.4 s each time, longer than reset_after: every crash counts as the first.
    spec = child(tmp_path, "flaky", "import time, sys; time.sleep(0.4); sys.exit(1)")
    sup = Supervisor(backoff=Backoff(initial=0.05, maximum=5.0, reset_after=0.3))
    await sup.start(spec)
    try:
        await eventually(lambda: len(sup.restart_delays("flaky")) >= 3)
    finally:
        await sup.stop()
    assert sup.restart_delays("flaky")[:3] == [0.05, 0.05, 0.05]


async def test_what_a_crashed_child_spawned_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan.pid"
    code = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "sys.exit(1)\n"  # dies, leaving its child in its process group
    )
    sup = Supervisor(backoff=Backoff(initial=30))
    await sup.start(child(tmp_path, "leaky", code))
    try:
        await eventually(lambda: pidfile.exists() and pidfile.read_text().isdigit())
        orphan = int(pidfile.read_text())
        await eventually(lambda: not is_alive(orphan))
    finally:
        await sup.stop()


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0)
    delays = [1.0]
    for _ in range(6):
        delays.append(backoff.following(delays[-1]))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


async def test_a_child_that_cannot_be_spawned_fails_start(tmp_path: Path) -> None:
    sup = Supervisor()
    spec = ChildSpec(name="ghost", argv=[str(tmp_path / "no-such-binary")], log_path=tmp_path / "ghost.log")
    with pytest.raises(OSError):
        await sup.start(spec)
    await sup.stop()


# --- shutdown -------------------------------------------------------------------


async def test_stop_ends_every_child_and_what_they_spawned(tmp_path: Path) -> None:
    grandchild_pidfile = tmp_path / "grandchild.pid"
    spawner = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(grandchild_pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    stubborn = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('re' + 'ady', flush=True)\n"
        "time.sleep(600)\n"
    )
    sup = Supervisor(stop_timeout=1.0)
    await sup.start(child(tmp_path, "sleeper", "import time; time.sleep(600)"))
    await sup.start(child(tmp_path, "spawner", spawner))
    await sup.start(child(tmp_path, "stubborn", stubborn))
    await eventually(lambda: grandchild_pidfile.exists() and grandchild_pidfile.read_text().isdigit())
    await eventually(lambda: "ready" in (tmp_path / "logs" / "stubborn.log").read_text())
    pids = [p for p in sup.pids().values() if p is not None]
    grandchild = int(grandchild_pidfile.read_text())
    assert len(pids) == 3 and is_alive(grandchild)

    started = time.monotonic()
    await sup.stop()
    took = time.monotonic() - started

    assert not any(is_alive(pid) for pid in [*pids, grandchild])
    assert 1.0 <= took < 8.0  # the stubborn one was killed once stop_timeout passed
    assert sup.pids() == {"sleeper": None, "spawner": None, "stubborn": None}


async def test_no_restart_after_stop(tmp_path: Path) -> None:
    sup = Supervisor(backoff=Backoff(initial=0.05))
    await sup.start(child(tmp_path, "crasher", "import sys; sys.exit(1)"))
    await asyncio.sleep(0.3)
    await sup.stop()
    starts = sup.starts()["crasher"]
    await asyncio.sleep(0.3)
    assert sup.starts()["crasher"] == starts
    assert sup.pids()["crasher"] is None


async def test_children_have_their_own_process_group(tmp_path: Path) -> None:
    sup = Supervisor()
    pid = await sup.start(child(tmp_path, "sleeper", "import time; time.sleep(600)"))
    try:
        assert os.getpgid(pid) == pid != os.getpgid(0)
    finally:
        await sup.stop()


# --- logs and bookkeeping ---------------------------------------------------------


async def test_stdout_and_stderr_are_appended_to_the_log_file(tmp_path: Path) -> None:
    # Strings built at run time: the log's header line quotes the command itself.
    spec = child(tmp_path, "talker", "import sys; print('to ' + 'stdout'); print('to ' + 'stderr', file=sys.stderr)")
    spec.log_path.parent.mkdir(parents=True)
    spec.log_path.write_text("earlier run\n")
    sup = Supervisor(backoff=Backoff(initial=30))  # exits at once; no restart within the test
    await sup.start(spec)
    await eventually(lambda: "to stderr" in spec.log_path.read_text() and "to stdout" in spec.log_path.read_text())
    await sup.stop()
    assert spec.log_path.read_text().startswith("earlier run\n")


async def test_on_change_reports_the_pids(tmp_path: Path) -> None:
    seen: list[dict[str, int | None]] = []
    sup = Supervisor(backoff=Backoff(initial=30), on_change=seen.append)
    pid = await sup.start(child(tmp_path, "short", "pass"))
    await eventually(lambda: seen[-1] == {"short": None})
    await sup.stop()
    assert seen[0] == {"short": pid}


async def test_the_child_gets_exactly_the_environment_given(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    code = (
        f"import os; open({str(out)!r}, 'w').write(os.environ.get('ONLY', '') + '|' + os.environ.get('HOME', 'none'))"
    )
    spec = ChildSpec(name="env", argv=[sys.executable, "-c", code], log_path=tmp_path / "env.log", env={"ONLY": "me"})
    sup = Supervisor(backoff=Backoff(initial=30))
    await sup.start(spec)
    await eventually(out.exists)
    await sup.stop()
    assert out.read_text() == "me|none"


# --- what each service may see (the security boundary) ----------------------------


def resolved_settings() -> Settings:
    return Settings(
        home=Path("/tmp/kafkaml-home"),
        bootstrap_servers="127.0.0.1:9092",
        database_url="postgresql://postgres:owner@/postgres?host=/x",
        api_database_url="postgresql://kafkaml_api:ro@/postgres?host=/x",
        api_token="s3cret-token",
    )


def service(name: str) -> ServiceDef:
    return next(s for s in SERVICES if s.name == name)


PARENT_ENV = {
    "PATH": "/usr/bin",
    # Exported in the user's shell: must not leak past the boundary.
    "KAFKAML_DATABASE_URL": "postgresql://leak@/x",
    "kafkaml_api_token": "lowercase-leak",  # pydantic-settings would read this name too
    "KAFKAML_SOME_FUTURE_PASSWORD": "nope",
    "KAFKAML_SOME_FUTURE_FLAG": "1",
    "KUBERNETES_SERVICE_HOST": "10.0.0.1",
}


def test_the_api_gets_the_read_only_url_and_token_but_not_the_owner_url() -> None:
    env = service_env(service("api"), resolved_settings(), PARENT_ENV)
    assert env["KAFKAML_API_DATABASE_URL"].startswith("postgresql://kafkaml_api:")
    assert env["KAFKAML_API_TOKEN"] == "s3cret-token"
    assert env["KAFKAML_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert "KAFKAML_DATABASE_URL" not in env
    assert "kafkaml_api_token" not in env
    assert env["KAFKAML_API_PORT"] == "8000"


def test_the_orchestrator_gets_the_owner_url_but_not_the_token() -> None:
    env = service_env(service("orchestrator"), resolved_settings(), PARENT_ENV)
    assert env["KAFKAML_DATABASE_URL"] == "postgresql://postgres:owner@/postgres?host=/x"
    assert "KAFKAML_API_TOKEN" not in env and "KAFKAML_API_DATABASE_URL" not in env


def test_the_validator_gets_kafka_only() -> None:
    env = service_env(service("validator"), resolved_settings(), PARENT_ENV)
    assert env["KAFKAML_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["KAFKAML_TOPIC_PREFIX"] == "kafkaml"  # it must find its topic
    leaked = [k for k in env if "URL" in k.upper() or "TOKEN" in k.upper() or k.startswith("KUBERNETES_")]
    assert leaked == []
    assert "s3cret-token" not in env.values()


def test_unknown_settings_pass_only_when_they_do_not_look_secret() -> None:
    for svc in SERVICES:
        env = service_env(svc, resolved_settings(), PARENT_ENV)
        if svc.user_code_settings is None:
            assert env["KAFKAML_SOME_FUTURE_FLAG"] == "1"
        else:  # a service that runs users' code gets the workers' allow-list: nothing unknown passes
            assert "KAFKAML_SOME_FUTURE_FLAG" not in env
        assert "KAFKAML_SOME_FUTURE_PASSWORD" not in env
        assert env["PATH"] == "/usr/bin"
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[3])
    assert is_secret_setting("metrics_url") and is_secret_setting("registry_password")
    assert not is_secret_setting("bootstrap_servers") and not is_secret_setting("topic_prefix")


# --- stack.json and the up lock ----------------------------------------------------


def stack_data(tmp_path: Path) -> StackFile:
    return {
        "api_url": "http://127.0.0.1:8000",
        "bootstrap_servers": "127.0.0.1:9092",
        "database_url": "postgresql://postgres:@/postgres?host=/x",
        "token": "t",
        "pid": os.getpid(),
        "home": str(tmp_path),
        "api_database_url": "",
        "started_at": 0.0,
        "broker_pid": None,
        "postgres_pid": None,
        "pgdata": None,
        "services": {"api": 123},
        "modules": {"api": "services.api"},
    }


def test_the_stack_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = write_stack(tmp_path, stack_data(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_stack(tmp_path) == stack_data(tmp_path)
    assert read_stack(tmp_path / "elsewhere") is None


def test_only_one_up_per_home(tmp_path: Path) -> None:
    assert holder_pid(tmp_path) is None
    with UpLock(tmp_path):
        assert holder_pid(tmp_path) == os.getpid()
        with pytest.raises(StackLockedError, match="already running"):
            UpLock(tmp_path).acquire()
    assert holder_pid(tmp_path) is None
    UpLock(tmp_path).acquire()  # free again (released with its descriptor)
