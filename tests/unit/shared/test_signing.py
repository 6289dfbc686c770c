"""Who may say what on the bus: the signature header, derived keys and their rights, and which
processes hold which key (shared.events.signing, shared.workerenv, the stack's service env)."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest

from services.api.commands import CommandBus
from shared.artifacts import chunk_artifact
from shared.events import (
    DeleteModel,
    Envelope,
    InferenceStats,
    ModelDefinition,
    ModelDeleted,
    ModelValidationFailed,
    TrainingFailed,
    ValidateModel,
)
from shared.events.catalog import DeleteModelPayload
from shared.events.inference import Stats
from shared.events.signing import (
    SIGNATURE_HEADER,
    Forged,
    Key,
    Keyring,
    header_schema,
    inference_signer,
    job_signer,
    validator_key,
)
from shared.events.training import Failure
from shared.events.validation import ValidateModelPayload, ValidationError
from shared.kafka import Producer
from shared.settings import Settings
from shared.stack.runner import SERVICES, service_env
from shared.workerenv import worker_environment

BUS = "unit-bus-key"
KEYS = Keyring([BUS])
JOB = str(uuid.uuid4())
DELETE = DeleteModel(payload=DeleteModelPayload(model_id=7))
FAILED = TrainingFailed(payload=Failure(result_id=3, deployment_id=1, error="x"))
DEFINITION = ModelDefinition(name="m", framework="tensorflow", code="model = 1")
REPO = Path(__file__).resolve().parents[3]


def signed(message: Envelope, key: Key | Keyring = KEYS) -> tuple[bytes, list[tuple[str, bytes]]]:
    value = message.to_bytes()
    return value, [key.header(message, value)]


def test_a_message_signed_with_the_bus_key_opens() -> None:
    value, headers = signed(DELETE)
    assert KEYS.open(value, headers) == DELETE


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "unsigned"),
        ([(SIGNATURE_HEADER, b"garbage")], "is not alg="),
        ([(SIGNATURE_HEADER, b"alg=md5;kid=x;signer=bus;sig=00")], "unknown algorithm"),
        ([(SIGNATURE_HEADER, b"alg=hmac-sha256;signer=bus;sig=00")], "lacks kid"),
    ],
)
def test_a_message_without_a_readable_signature_is_forged(headers: list[tuple[str, bytes]], reason: str) -> None:
    with pytest.raises(Forged, match=reason):
        KEYS.open(DELETE.to_bytes(), headers)


def test_changed_bytes_or_another_bus_key_do_not_verify() -> None:
    value, headers = signed(DELETE)
    with pytest.raises(Forged, match="wrong signature"):
        KEYS.open(value.replace(b'"model_id":7', b'"model_id":8'), headers)
    with pytest.raises(Forged, match="unknown key"):
        KEYS.open(*signed(DELETE, Keyring(["another stack's key"])))
    # A job's key claiming to be the bus key: the bus key would be needed to match.
    job = KEYS.key(job_signer(JOB, [3]))
    with pytest.raises(Forged):
        KEYS.open(value, [Key("bus", job.secret).header(DELETE, value)])


def test_a_job_key_speaks_for_its_own_results_only() -> None:
    own = KEYS.key(job_signer(JOB, [3, 4]))
    assert KEYS.open(*signed(FAILED, own)) == FAILED
    for chunk in chunk_artifact(4, b"model"):
        assert KEYS.open(*signed(chunk, own)) == chunk
    other = KEYS.key(job_signer(str(uuid.uuid4()), [5]))
    with pytest.raises(Forged, match="may not sign a TrainingFailed about result_id 3"):
        KEYS.open(*signed(FAILED, other))
    with pytest.raises(Forged, match="may not sign DeleteModel"):
        KEYS.open(*signed(DELETE, own))
    # The scope is part of the key: claiming more results than the key was made for fails.
    value, _ = signed(FAILED)
    widened = Key(job_signer(JOB, [3, 4, 5]), own.secret)
    with pytest.raises(Forged, match="unknown key"):
        KEYS.open(value, [widened.header(FAILED, value)])


def test_an_inference_key_speaks_for_its_inference_only() -> None:
    stats = InferenceStats(payload=Stats(inference_id=9, replica="0", window_s=1, messages=1, throughput=1))
    assert KEYS.open(*signed(stats, KEYS.key(inference_signer(JOB, 9)))) == stats
    with pytest.raises(Forged, match="about inference_id 9"):
        KEYS.open(*signed(stats, KEYS.key(inference_signer(JOB, 10))))
    with pytest.raises(Forged, match="may not sign TrainingFailed"):
        KEYS.open(*signed(FAILED, KEYS.key(inference_signer(JOB, 3))))


def test_the_validator_holds_its_own_key_only() -> None:
    validator = Keyring.of(Settings(validator_key=validator_key(BUS)))
    ask = ValidateModel(payload=ValidateModelPayload(model=DEFINITION))
    # The services sign validation requests with the validator's key, so the validator can check them.
    assert validator.open(*signed(ask)) == ask
    with pytest.raises(Forged, match="unknown key"):
        validator.open(*signed(DELETE))  # signed with the bus key, which it cannot check
    answer = ask.reply(ModelValidationFailed(payload=ValidationError(model=DEFINITION, error="x")))
    assert KEYS.open(*signed(answer, validator)) == answer
    with pytest.raises(Forged, match="validator's key may not sign DeleteModel"):
        KEYS.open(*signed(DELETE, validator))


def test_during_a_rotation_the_first_key_signs_and_both_verify() -> None:
    rotated = Keyring(["new-key", BUS])
    assert rotated.open(*signed(DELETE)) == DELETE  # signed with the old key
    value, headers = signed(DELETE, rotated)
    with pytest.raises(Forged, match="unknown key"):
        KEYS.open(value, headers)


def test_a_service_refuses_to_start_without_a_bus_key() -> None:
    with pytest.raises(RuntimeError, match="KAFKAML_BUS_KEY is not set"):
        Keyring.of(Settings(), required=True)


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sign_command", REPO / "examples" / "sign_command.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_recipe_verifies_and_matches_the_published_schema() -> None:
    value = DELETE.to_bytes()
    header = example().signature(BUS, value)
    assert KEYS.open(value, [(SIGNATURE_HEADER, header)]) == DELETE
    jsonschema.validate(header.decode(), header_schema())
    for key in (KEYS.key(job_signer(JOB, [1, 2])), KEYS.key(inference_signer(JOB, 1)), KEYS.key("validator")):
        jsonschema.validate(key.header(FAILED, value)[1].decode(), header_schema())


def test_no_key_reaches_a_process_that_runs_user_code() -> None:
    settings = Settings(bootstrap_servers="k:9092", bus_key=BUS, validator_key=validator_key(BUS))
    parent = {"PATH": "/usr/bin", "KAFKAML_BUS_KEY": BUS, "KAFKAML_VALIDATOR_KEY": validator_key(BUS)}
    worker = worker_environment(settings, parent)
    assert not [name for name in worker if "KEY" in name]
    envs = {service.name: service_env(service, settings, parent) for service in SERVICES}
    assert envs["validator"]["KAFKAML_VALIDATOR_KEY"] == validator_key(BUS)
    assert "KAFKAML_BUS_KEY" not in envs["validator"]
    for name in ("api", "orchestrator", "metrics", "control-logger"):
        assert envs[name]["KAFKAML_BUS_KEY"] == BUS and "KAFKAML_VALIDATOR_KEY" not in envs[name]


async def test_the_api_takes_an_outcome_only_when_it_verifies() -> None:
    """A worker can read a command's id on the commands topic and forge its answer: the API's
    outcome listener resolves the waiting request with signed outcomes only."""
    settings = Settings(bus_key=BUS, bootstrap_servers="localhost:1")
    bus = CommandBus(settings, Producer(settings))  # neither is started: nothing is sent here
    waiting: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
    bus._waiting[DELETE.event_id] = waiting
    outcome = DELETE.reply(ModelDeleted(payload=DeleteModelPayload(model_id=7)))
    bus._resolve(outcome.to_bytes(), [])
    bus._resolve(*signed(outcome, KEYS.key(job_signer(JOB, [7]))))
    assert not waiting.done()
    bus._resolve(*signed(outcome))
    assert waiting.result() == outcome
