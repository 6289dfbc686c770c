"""The KAFKAML_ variables are a public contract: every documented one exists, every field is read.

A variable named in README.md or docs/*.md must be a ``Settings`` field (or one of the few
variables set by a launcher for its worker, listed below), and every ``Settings`` field must
take effect somewhere: read from a settings object in services/ or shared/, and, when only
a process that runs user code reads it, passed to that process (``WORKER_SETTINGS``: those
processes get an allow-listed environment).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from shared.settings import Settings
from shared.workerenv import WORKER_SETTINGS

ROOT = Path(__file__).resolve().parents[2]

# Set by a launcher for the process it starts, or read by a test run, not through Settings.
OTHER_VARIABLES = frozenset(
    {"KAFKAML_ALIVE_FILE", "KAFKAML_JOB_ID", "KAFKAML_REPLICA", "KAFKAML_WRITE_CLIENT_TABLE", "KAFKAML_SCREENSHOTS"}
)
# Families of variables with their own settings class, documented in deploy/README.md.
OTHER_PREFIXES = ("KAFKAML_K8S_",)

VARIABLE = re.compile(r"\bKAFKAML_[A-Z0-9_]+")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_variables() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in documents():
        for name in VARIABLE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    return found


def known(name: str) -> bool:
    if name in OTHER_VARIABLES or name.startswith(OTHER_PREFIXES):
        return True
    return name.removeprefix("KAFKAML_").lower() in Settings.model_fields


def test_docs_exist() -> None:
    assert (ROOT / "docs/contracts.md").is_file()


def test_every_documented_variable_is_a_setting() -> None:
    unknown = {name: where for name, where in documented_variables().items() if not known(name)}
    assert not unknown, f"documented but not a Settings field: {unknown}"


def test_every_setting_is_documented_in_the_contracts() -> None:
    text = (ROOT / "docs/contracts.md").read_text(encoding="utf-8")
    missing = [f for f in Settings.model_fields if f"KAFKAML_{f.upper()}" not in text]
    assert not missing, f"Settings fields missing from docs/contracts.md: {missing}"


# --- which fields the code reads ----------------------------------------------


def is_settings_object(node: ast.expr) -> bool:
    """``settings``, ``self._settings``, ``app.settings``, ``Settings()``, ``get_settings()``."""
    if isinstance(node, ast.Name):
        return "settings" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "settings" in node.attr.lower()
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in {"Settings", "get_settings"}
    return False


def runs_user_code(path: Path) -> bool:
    """Trainer and inferencer processes get the allow-listed environment; the validator role
    is a service of its own (only its sandbox children run user code)."""
    relative = path.relative_to(ROOT).parts
    return relative[:2] in {("services", "trainer"), ("services", "inferencer")} and not any(
        "validator" in part for part in relative
    )


def settings_reads() -> dict[str, set[Path]]:
    """Field name → the source files that read it from a settings object."""
    reads: dict[str, set[Path]] = {}
    sources = [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("shared").rglob("*.py")]
    for path in sources:
        if path == ROOT / "shared" / "settings.py" or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and is_settings_object(node.value):
                reads.setdefault(node.attr, set()).add(path.resolve())
    return reads


# Properties of Settings that stand for a field.
PROPERTIES = {"brokers": "bootstrap_servers", "db_url": "database_url"}


def test_every_setting_is_read() -> None:
    reads = settings_reads()
    for prop, field in PROPERTIES.items():
        reads.setdefault(field, set()).update(reads.get(prop, set()))
    for name in WORKER_SETTINGS:  # shared/workerenv.py passes these to workers by name
        reads.setdefault(name, set()).add((ROOT / "shared" / "workerenv.py").resolve())
    unread = sorted(f for f in Settings.model_fields if not reads.get(f))
    assert not unread, f"Settings fields no code reads: {unread}"


def test_settings_read_by_workers_reach_them() -> None:
    reads = settings_reads()
    lost = sorted(
        field
        for field in Settings.model_fields
        if (files := reads.get(field)) and all(runs_user_code(p) for p in files) and field not in WORKER_SETTINGS
    )
    assert not lost, (
        f"read only by trainer/inferencer processes but not passed to them (shared/workerenv.py "
        f"WORKER_SETTINGS): {lost}"
    )
