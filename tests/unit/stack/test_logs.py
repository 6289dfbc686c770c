"""Log files: readable by their owner only, rotated in place once large, the writer undisturbed."""

from __future__ import annotations

import os
from pathlib import Path

from shared.stack.processes import open_log, rotate_log


def test_a_log_is_created_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "api.log"
    with open_log(path) as handle:
        handle.write(b"started\n")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_large_log_is_rotated_and_its_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    writer = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # as a child process holds it
    try:
        os.write(writer, b"a" * 100)
        assert not rotate_log(path, max_bytes=1000), "a small log stays as it is"
        for generation in range(4):
            os.write(writer, bytes([ord("b") + generation]) * 2000)
            assert rotate_log(path, max_bytes=1000, keep=3)
        os.write(writer, b"after\n")
    finally:
        os.close(writer)
    assert path.read_bytes() == b"after\n", "the writer's next line lands at the start of the emptied file"
    assert (tmp_path / "svc.log.1").read_bytes() == b"e" * 2000
    assert (tmp_path / "svc.log.2").read_bytes() == b"d" * 2000
    assert (tmp_path / "svc.log.3").read_bytes() == b"c" * 2000
    assert not (tmp_path / "svc.log.4").exists(), "only ``keep`` old copies are kept"
    assert oct((tmp_path / "svc.log.1").stat().st_mode & 0o777) == "0o600"
