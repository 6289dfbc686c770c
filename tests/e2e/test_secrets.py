"""End to end: model code run by `kafkaml up` (in the validator and in a trainer) learns no token and
no database credential, whatever it reads; and no file of the home but those meant to holds one.

The model code below probes what a hostile author would: the home's state files, its own environment,
every other process's ``/proc/<pid>/environ``, PostgreSQL's socket as each role without a password.
It reports exception names and variable names only (never values), as JSON in the message it raises,
so that the scrubber of errors (``shared.scrub``) does not hide a leak from this test. In the validator
it always raises; in a trainer (which, unlike a validation child, has ``KAFKAML_BOOTSTRAP_SERVERS``)
it builds the model at validation and raises when the trainer builds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.credentials import assert_home_keeps_its_credentials
from tests.e2e.test_training import KERAS_DIGITS, User, explained, free_port, kafkaml, log_tails

pytestmark = pytest.mark.e2e

SECRET_VARIABLES = ("KAFKAML_API_TOKEN", "KAFKAML_DATABASE_URL", "KAFKAML_API_DATABASE_URL", "KAFKAML_HOME")

PROBE = """\
import hashlib, json, os
def _probe():
    seen = {"uid": os.getuid()}
    for key, path in FILES.items():
        try:
            with open(path, "rb") as handle:
                seen[key] = "READ %d bytes" % len(handle.read())
        except Exception as exc:
            seen[key] = type(exc).__name__
    seen["env"] = sorted(os.environ)
    seen["env_values"] = sorted(hashlib.sha256(v.encode()).hexdigest()[:16] for v in os.environ.values())
    leaked = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as handle:
                data = handle.read()
        except Exception:
            continue
        leaked.update(name for name in NAMES if (name + "=").encode() in data)
    seen["proc"] = sorted(leaked)
    import asyncio, asyncpg
    async def connect(user):
        try:
            connection = await asyncpg.connect(host=SOCKET_DIR, user=user, database="postgres", timeout=5)
        except Exception as exc:
            return type(exc).__name__
        await connection.close()
        return "CONNECTED"
    seen["db"] = {user: asyncio.run(connect(user)) for user in ("postgres", "kafkaml_api")}
    return "PROBE " + json.dumps(seen) + " END"
"""


def probe_code(home: Path, socket_dir: str, *, trainer_only: bool) -> str:
    files = {
        "stack": str(home / "stack.json"),
        "pg": str(home / "postgres-password"),
        "api": str(home / "api-db-password"),
        "log": str(home / "logs" / "orchestrator.log"),
        "pgconf": str(home / "pgdata" / "postgresql.conf"),
        "cwd_home": ".kafkaml/stack.json",
    }
    head = f"FILES = {files!r}\nNAMES = {list(SECRET_VARIABLES)!r}\nSOCKET_DIR = {socket_dir!r}\n" + PROBE
    if trainer_only:
        return head + 'if "KAFKAML_BOOTSTRAP_SERVERS" in os.environ:\n    raise RuntimeError(_probe())\n' + KERAS_DIGITS
    return head + "raise RuntimeError(_probe())\n"


def strings(answer: Any) -> Iterator[str]:
    if isinstance(answer, str):
        yield answer
    elif isinstance(answer, dict):
        for value in answer.values():
            yield from strings(value)
    elif isinstance(answer, list):
        for value in answer:
            yield from strings(value)


def report(answer: Any) -> dict[str, Any]:
    text = "\n".join(strings(answer))
    found = re.search(r"PROBE (\{.*\}) END", text, re.S)
    assert found, f"no probe report in {answer!r}"
    seen: dict[str, Any] = json.loads(found.group(1))
    return seen


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def assert_learned_nothing(seen: dict[str, Any], stack: dict[str, Any]) -> None:
    assert seen["uid"] != 0 and seen["uid"] != os.getuid(), f"user code ran as the services' user: {seen}"
    for key in ("stack", "pg", "api", "log", "pgconf", "cwd_home"):
        assert not seen[key].startswith("READ"), f"user code read {key}: {seen}"
    assert not set(SECRET_VARIABLES) & set(seen["env"]), seen["env"]
    # Its environment holds no value the stack keeps secret (compared by digest: the report holds none).
    home: Path = stack["home"]
    secrets = [stack["token"], stack["database_url"], stack["api_database_url"]]
    secrets += [(home / name).read_text().strip() for name in ("postgres-password", "api-db-password")]
    assert {digest(s) for s in secrets}.isdisjoint(seen["env_values"]), "a secret is in its environment"
    assert seen["proc"] == [], f"read from another process's environment: {seen['proc']}"
    assert "CONNECTED" not in seen["db"].values(), seen["db"]


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    home = Path(tempfile.mkdtemp(prefix="kml-e2e-sec-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKAML_")}
    env.update(KAFKAML_HOME=str(home), KAFKAML_API_PORT=str(free_port()))
    up = kafkaml(env, "up", "--detach")
    if up.returncode != 0:
        pytest.fail(f"kafkaml up failed:\n{up.stdout}\n{up.stderr}\n{log_tails(home)}")
    info = json.loads((home / "stack.json").read_text())
    info.update(home=home, env=env, up_output=up.stdout + up.stderr)
    try:
        yield info
    finally:
        kafkaml(env, "down", timeout=120)


@pytest.fixture(scope="module")
def user(stack: dict[str, Any]) -> Iterator[User]:
    client = User(stack)
    yield client
    client.close()


def socket_dir(stack: dict[str, Any]) -> str:
    found = re.search(r"host=([^&]+)", stack["database_url"])
    assert found, stack["database_url"]
    return found.group(1)


def test_model_code_in_the_validator_learns_no_secret(stack: dict[str, Any], user: User) -> None:
    code = probe_code(stack["home"], socket_dir(stack), trainer_only=False)
    with explained(stack):
        status, answer = user.command("POST", "/models", {"name": "probe", "framework": "tensorflow", "code": code})
        assert status == 422, answer
        text = json.dumps(answer)
        assert stack["token"] not in text and "postgresql://" not in text
        assert_learned_nothing(report(answer), stack)


@pytest.fixture(scope="module")
def training(stack: dict[str, Any], user: User) -> dict[str, Any]:
    """A training whose model code probes for secrets when the trainer builds it."""
    code = probe_code(stack["home"], socket_dir(stack), trainer_only=True)
    with explained(stack):
        deployment_id, result_id = user.deploy(user.configuration("tensorflow", code), fit={"epochs": 1})
        user.send_digits(deployment_id, "e2e-secrets-digits", 200)
        return user.wait(result_id)


def test_model_code_in_a_trainer_learns_no_secret(stack: dict[str, Any], training: dict[str, Any]) -> None:
    with explained(stack):
        assert training["status"] == "failed", training
        assert stack["token"] not in training["error"] and "postgresql://" not in training["error"]
        assert_learned_nothing(report(training["error"]), stack)


def test_no_file_of_the_home_holds_a_credential_but_its_holders_and_all_are_owner_only(
    stack: dict[str, Any], training: dict[str, Any]
) -> None:
    time.sleep(1)  # the trainer's last log lines
    assert_home_keeps_its_credentials(stack)
