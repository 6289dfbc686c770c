"""A worker's spec as its launcher hands it over: what it refuses, and why (the worker exits 2)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from shared.errors import SpecNotFound
from shared.events.inference import ServeSpec
from shared.jobs import read_spec
from tests.unit.fakes import serve_spec

SPEC = serve_spec("job-1", result_id=2, input_config={"data_type": "float32", "data_reshape": "2"})


def test_a_spec_is_read_from_a_file_or_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spec.json"
    path.write_text(SPEC.model_dump_json())
    assert read_spec(str(path), ServeSpec, "job-1") == SPEC
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SPEC.model_dump_json().encode())))
    assert read_spec("-", ServeSpec) == SPEC


def test_a_missing_empty_foreign_or_broken_spec_says_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SpecNotFound, match="cannot read the ServeSpec"):
        read_spec(str(tmp_path / "absent.json"), ServeSpec)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(SpecNotFound, match="handed over nothing"):
        read_spec("-", ServeSpec)
    path = tmp_path / "spec.json"
    path.write_text(SPEC.model_dump_json())
    with pytest.raises(SpecNotFound, match="for job job-1, not job-2"):
        read_spec(str(path), ServeSpec, "job-2")
    path.write_text('{"job_id": "job-1"}')
    with pytest.raises(SpecNotFound, match="does not read"):
        read_spec(str(path), ServeSpec)
