"""`make demo` as a user runs it: on a fresh home, the whole pipeline, both accuracies printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, stack_processes

pytestmark = pytest.mark.e2e


def test_demo_trains_serves_and_reports_both_accuracies() -> None:
    home = Path(tempfile.mkdtemp(prefix="kml-demo-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKAML_")}
    env.update(KAFKAML_HOME=str(home), KAFKAML_API_PORT=str(free_port()))
    run = subprocess.run(
        [sys.executable, "examples/demo.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    test = re.search(r"test accuracy: ([0-9.]+)", output)
    served = re.search(r"inference accuracy: ([0-9.]+) \((\d+) of (\d+)", output)
    assert test and float(test.group(1)) >= 0.9, output[-2000:]
    assert served and float(served.group(1)) >= 0.9 and served.group(2) == served.group(3), output[-2000:]
    assert stack_processes(home) == [], "the demo stops the stack it started"
