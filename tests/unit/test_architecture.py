"""Rules of the codebase that no single test of behaviour would notice breaking.

- services talk only through Kafka: no service imports another service's package, and
  shared/ imports no service; user code is loaded (``shared.usercode``) only by the trainer
  and the inferencer, the processes with an allow-listed environment;
- every module is small enough to read in one sitting (500 lines);
- tracked files point at no document the repository lacks, nor at a build machine's paths.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 500

# The folder names a service; the package it is imported as (services/control-logger is
# services.control_logger; services/control_logger, a link to it for mypy, is skipped).
SERVICE_PACKAGES = {
    path.name: path.name.replace("-", "_")
    for path in (ROOT / "services").iterdir()
    if path.is_dir() and not path.is_symlink() and path.name != "__pycache__"
}
# Only these may load user code.
USERCODE_IMPORTERS = {"trainer", "inferencer"}


def python_files(folder: Path) -> list[Path]:
    # services/control_logger is a link to services/control-logger (for mypy): walk the folder once.
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts and not p.is_symlink())


def service_files(folder: str) -> list[Path]:
    return python_files(ROOT / "services" / folder)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1]).replace("-", "_")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_services_do_not_import_each_other() -> None:
    wrong: list[str] = []
    for folder, package in SERVICE_PACKAGES.items():
        others = [f"services.{p}" for p in SERVICE_PACKAGES.values() if p != package]
        for path in service_files(folder):
            for module in imported_modules(path):
                if any(within(module, other) for other in others):
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "services talk through Kafka only:\n" + "\n".join(sorted(set(wrong)))


def test_shared_imports_no_service() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(ROOT / "shared")
        for module in imported_modules(path)
        if within(module, "services")
    ]
    assert not wrong, "shared/ is below every service:\n" + "\n".join(sorted(set(wrong)))


def test_user_code_is_loaded_only_by_trainer_and_inferencer() -> None:
    wrong: list[str] = []
    for folder in SERVICE_PACKAGES:
        if folder in USERCODE_IMPORTERS:
            continue
        for path in service_files(folder):
            wrong.extend(
                f"{path.relative_to(ROOT)} imports {m}" for m in imported_modules(path) if within(m, "shared.usercode")
            )
    for path in python_files(ROOT / "shared"):
        if within(".".join(path.relative_to(ROOT).with_suffix("").parts), "shared.usercode"):
            continue
        wrong.extend(
            f"{path.relative_to(ROOT)} imports {m}" for m in imported_modules(path) if within(m, "shared.usercode")
        )
    assert not wrong, "only the trainer and the inferencer run user code:\n" + "\n".join(sorted(set(wrong)))


def test_the_import_walk_sees_imports() -> None:
    """The rules above are only as good as the walk: it must find what a service does import."""
    found = set().union(*(imported_modules(p) for p in service_files("orchestrator")))
    assert any(within(m, "shared.events") for m in found)
    assert any(within(m, "services.orchestrator") for m in found)


# --- size --------------------------------------------------------------------


def test_no_module_over_500_lines() -> None:
    long: list[str] = []
    for folder in ("services", "shared"):
        for path in python_files(ROOT / folder):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("shared/db/migrations/"):
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                long.append(f"{relative}: {lines} lines")
    assert not long, f"modules over {MAX_LINES} lines (split them along their sections):\n" + "\n".join(long)


# --- references --------------------------------------------------------------


def tracked_text_files() -> list[Path]:
    listed = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    )
    files: list[Path] = []
    for name in listed:
        path = ROOT / name
        if not name or not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        files.append(path)
    return files


@pytest.fixture(scope="module")
def tracked() -> dict[Path, str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    return {path: path.read_text(encoding="utf-8", errors="replace") for path in tracked_text_files()}


# A document name: a markdown link target or a bare word ending in .md (a URL is someone else's).
DOCUMENT = re.compile(r"(?<![\w/.:-])((?:\.{1,2}/)?[\w./-]*\w\.md)\b")
URL = re.compile(r"[a-z]+://\S+")


def test_referenced_documents_exist(tracked: dict[Path, str]) -> None:
    missing: list[str] = []
    for path, text in tracked.items():
        if path == Path(__file__).resolve():
            continue  # its own self-check names documents that do not exist, on purpose
        for name in DOCUMENT.findall(URL.sub(" ", text)):
            candidates = [] if name.startswith("/") else [(path.parent / name).resolve(), (ROOT / name).resolve()]
            if not any(c.is_file() and c.is_relative_to(ROOT) for c in candidates):
                missing.append(f"{path.relative_to(ROOT)} names {name}")
    assert not missing, "references to documents that are not in the repository:\n" + "\n".join(sorted(set(missing)))


# Paths of the machine the project was built on (docs/architecture.md, "The repository stands
# alone"): a sibling checkout beside the repository, and top-level folders of a build machine.
# The pattern is put together from the folders' names, so that this file holds no such path
# either and the rule applies to it too.
SIBLING_CHECKOUT = "shared"
MACHINE_FOLDERS = ("work", "root", "home")


def machine_path(folder: str, rest: str = "") -> str:
    return f"/{folder}/{rest}"


BUILD_MACHINE = re.compile(
    r"(?<![\w.])(\.\./" + SIBLING_CHECKOUT + "/|" + "|".join(re.escape(machine_path(f)) for f in MACHINE_FOLDERS) + ")"
)


def test_no_build_machine_paths(tracked: dict[Path, str]) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
        for path, text in tracked.items()
        for number, line in enumerate(text.splitlines(), start=1)
        if BUILD_MACHINE.search(line)
    ]
    assert not found, "paths of a build machine in tracked files:\n" + "\n".join(found)


def test_the_patterns_find_what_they_should() -> None:
    text = "see [x](../docs/a.md#b), FOO.md and docs/contracts.md; not https://example.org/y.md"
    assert DOCUMENT.findall(URL.sub(" ", text)) == ["../docs/a.md", "FOO.md", "docs/contracts.md"]
    for folder in MACHINE_FOLDERS:
        assert BUILD_MACHINE.search("built in " + machine_path(folder, "main"))
        assert not BUILD_MACHINE.search("COPY . /app" + machine_path(folder))  # a container path
    assert BUILD_MACHINE.search("from ../" + SIBLING_CHECKOUT + "/x")
