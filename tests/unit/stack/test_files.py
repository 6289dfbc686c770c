"""The stack's state files are its owner's alone (user code runs on the same machine)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shared.stack.files import owner_only_umask, read_or_create_secret, restrict_home, secure_tree


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    first = read_or_create_secret(path)
    assert len(first) >= 24 and mode(path) == 0o600
    path.chmod(0o644)  # left readable by an older version
    assert read_or_create_secret(path) == first and mode(path) == 0o600


def test_secure_tree_closes_files_and_folders_an_older_home_left_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "logs" / "jobs").mkdir(parents=True)
    for path in (home / "stack.json", home / "logs" / "api.log", home / "logs" / "jobs" / "trainer-1.log"):
        path.write_text("x")
        path.chmod(0o644)
    for folder in (home, home / "logs", home / "logs" / "jobs"):
        folder.chmod(0o755)
    secure_tree(home)
    for folder in (home, home / "logs", home / "logs" / "jobs"):
        assert mode(folder) == 0o700, folder
    for path in home.rglob("*"):
        if path.is_file():
            assert mode(path) == 0o600, path


def test_the_home_is_only_traversable_when_postgres_must_pass(tmp_path: Path) -> None:
    restrict_home(tmp_path, traversable=True)
    assert mode(tmp_path) == 0o711
    restrict_home(tmp_path)
    assert mode(tmp_path) == 0o700


def test_the_owner_only_umask_applies_to_what_is_created_next(tmp_path: Path) -> None:
    old = owner_only_umask()
    try:
        (tmp_path / "d").mkdir()
        (tmp_path / "f").write_text("x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "d") == 0o700 and mode(tmp_path / "f") == 0o600
