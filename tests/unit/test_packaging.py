"""pyproject lists packages explicitly (services/control-logger needs a mapping): keep the list complete."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = {Path(folder): name for name, folder in config["package-dir"].items()}
    found = set()
    for top in ("shared", "services"):
        for init in (REPO / top).rglob("__init__.py"):
            folder = init.parent.relative_to(REPO)
            if "migrations" in folder.parts and folder.name == "versions":
                continue
            name = mapped.get(folder) or ".".join(folder.parts)
            found.add(name)
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    # The Alembic folder ships as package data (env.py, versions/), without an __init__.py.
    assert listed - found == {"shared.db.migrations"}, "these listed packages have no folder"
