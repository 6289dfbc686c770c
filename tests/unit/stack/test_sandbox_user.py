"""Who user code runs as on a local stack: the configured ids, the sandbox user as root, else ourselves (said)."""

from __future__ import annotations

import logging

import pytest

from shared.settings import Settings
from shared.stack import sandboxuser
from shared.stack.sandboxuser import SandboxIdentity, sandbox_identity


def test_configured_ids_are_used_as_given_and_the_gid_defaults_to_the_uid() -> None:
    assert sandbox_identity(Settings(sandbox_uid=5000, sandbox_gid=5001)) == SandboxIdentity(5000, 5001)
    assert sandbox_identity(Settings(sandbox_uid=5000)) == SandboxIdentity(5000, 5000)


def test_root_is_refused_as_the_sandbox_user() -> None:
    with pytest.raises(ValueError, match="sandbox_uid"):
        Settings(sandbox_uid=0)


def test_not_root_user_code_runs_as_ourselves_and_the_log_says_what_does_not_hold(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sandboxuser.os, "geteuid", lambda: 1000)
    with caplog.at_level(logging.WARNING, logger="shared.stack.sandboxuser"):
        assert sandbox_identity(Settings()) is None
    (record,) = caplog.records
    message = record.getMessage()
    assert "not running as root (uid 1000)" in message and "stack.json" in message and "environ" in message
