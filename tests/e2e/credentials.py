"""What a stack's home may hold after use: credentials only in the files meant for them, and every
file and folder readable by its owner alone (user code runs on the same machine)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

# The files meant to hold a credential; every other file of the home holds none.
HOLDERS = {"stack.json", "postgres-password", "api-db-password"}


def credentials_of(stack: dict[str, Any]) -> list[str]:
    """The stack's credentials: the API token, the bus key and the database passwords."""
    home: Path = stack["home"]
    passwords = [(home / name).read_text().strip() for name in ("postgres-password", "api-db-password")]
    found = [stack["token"], stack["bus_key"], *passwords]
    assert all(len(secret) >= 20 for secret in found)
    return found


def assert_home_keeps_its_credentials(stack: dict[str, Any]) -> None:
    home: Path = stack["home"]
    secrets = credentials_of(stack)
    for path in home.rglob("*"):
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode):
            assert stat.S_IMODE(info.st_mode) & 0o077 == 0, f"{path} is open to others"
        if not stat.S_ISREG(info.st_mode):
            continue
        assert stat.S_IMODE(info.st_mode) & 0o077 == 0, f"{path} is {oct(stat.S_IMODE(info.st_mode))}"
        content = path.read_bytes()
        leaked = [i for i, secret in enumerate(secrets) if secret.encode() in content]
        if path.relative_to(home).as_posix() in HOLDERS:
            assert stat.S_IMODE(info.st_mode) == 0o600, path
        else:
            assert leaked == [], f"{path} holds a credential"
    assert stat.S_IMODE(home.stat().st_mode) in (0o700, 0o711)


def assert_logs_carry_no_token(stack: dict[str, Any]) -> None:
    """``grep -r <token> logs/`` finds nothing, and the API's request lines name no credential."""
    logs: Path = stack["home"] / "logs"
    token = stack["token"].encode()
    files = [path for path in logs.rglob("*") if path.is_file()]
    assert files, "the stack wrote no log"
    assert [path for path in files if token in path.read_bytes()] == []
    api_lines = [line for path in logs.glob("api*") for line in path.read_text(errors="replace").splitlines()]
    requests = [line for line in api_lines if '"GET ' in line or '"POST ' in line or '"DELETE ' in line]
    assert requests, "the API's log has no request line"
    assert not any("token=" in line for line in requests)
