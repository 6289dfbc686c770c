"""The liveness file the Kubernetes probe reads: touched by the consume loop, at most once a
second; the probe's check of its age; when a faust app counts as consuming."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import faust
import pytest
from faust.transport.consumer import ThreadDelegateConsumer

from shared.alive import AliveFile, probe_command
from shared.faust_app import consuming, make_faust_app
from shared.settings import Settings


def test_alive_file_is_touched_and_rate_limited(tmp_path: Path) -> None:
    path = tmp_path / "alive"
    alive = AliveFile(str(path))
    alive.touch()
    assert path.exists()
    os.utime(path, (0, 0))
    alive.touch()  # within a second of the first: not touched again
    assert path.stat().st_mtime == 0
    alive.last -= 2
    alive.touch()
    assert time.time() - path.stat().st_mtime < 5


def test_off_without_a_path() -> None:
    AliveFile(None).touch()  # nothing to do, nothing raised


def test_off_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKAML_ALIVE_FILE", raising=False)
    assert AliveFile.from_env().path is None
    monkeypatch.setenv("KAFKAML_ALIVE_FILE", "/tmp/somewhere")
    assert AliveFile.from_env().path == "/tmp/somewhere"


def test_the_probe_fails_without_the_file_and_when_it_is_stale(tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    command = probe_command(str(alive), 60)
    run = [sys.executable, *command[1:]]
    env = {k: v for k, v in os.environ.items() if k != "KAFKAML_ALIVE_FILE"}
    assert subprocess.run(run, env=env, capture_output=True).returncode != 0  # not there yet
    AliveFile(str(alive)).touch()
    assert subprocess.run(run, env=env).returncode == 0
    old = time.time() - 120
    os.utime(alive, (old, old))
    assert subprocess.run(run, env=env).returncode == 1


def close_consumer_thread_loop(app: faust.App) -> None:
    """faust's consumer makes an event loop for its thread at once; never started, it stays open."""
    cast("ThreadDelegateConsumer", app.consumer)._thread.thread_loop.close()


async def test_a_faust_app_is_consuming_until_its_fetcher_or_consumer_crashed() -> None:
    settings = Settings(bootstrap_servers="localhost:1")
    fetcher_down = make_faust_app(settings, "one")
    consumer_down = make_faust_app(settings, "two")
    try:
        assert consuming(fetcher_down)
        await fetcher_down._fetcher.crash(RuntimeError("drain failed"))
        assert not consuming(fetcher_down)
        await consumer_down.consumer.crash(RuntimeError("consumer thread died"))
        assert not consuming(consumer_down)
    finally:
        close_consumer_thread_loop(fetcher_down)
        close_consumer_thread_loop(consumer_down)
