"""The validator as a real process, holding only its own key: it refuses validation requests
not signed with that key (dead-lettered), signs its answers with it, and the users' code it
builds in its sandbox children sees neither that key nor the bus key."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from shared.events import ModelDefinition, ModelValidationFailed, ValidateModel
from shared.events.signing import Keyring
from shared.events.validation import ValidateModelPayload
from shared.kafka import Producer, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import service_env

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]

# Looks for a key everywhere a child could: its environment as Python sees it and as the
# kernel recorded it when the process started.
SNOOP = """import os
seen = open('/proc/self/environ', 'rb').read().decode(errors='replace') + repr(dict(os.environ))
raise RuntimeError('a key is visible' if 'KEY' in seen else 'no key here')
"""


async def read_all(settings: Settings, topic: str, count: int, timeout_s: float) -> list[Any]:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


async def test_the_validator_checks_requests_signs_answers_and_keeps_its_key_from_user_code(
    settings: Settings, run_service: StartService
) -> None:
    topics = topics_for(settings)
    await ensure_topics(settings)
    env = service_env(settings, database=False)
    assert "KAFKAML_BUS_KEY" not in env and "KAFKAML_VALIDATOR_KEY" in env
    run_service("services.trainer.validator", env, name="validator")
    definition = ModelDefinition(name="snoop", framework="tensorflow", code=SNOOP)
    forged = ValidateModel(payload=ValidateModelPayload(model=definition))
    bus_signed = ValidateModel(payload=ValidateModelPayload(model=definition))
    asked = ValidateModel(payload=ValidateModelPayload(model=definition))
    keys = Keyring([settings.bus_key or ""])
    async with Producer(settings) as producer:
        await producer.send(topics.validation, forged.to_bytes(), key=forged.key())
        await producer.publish(bus_signed, signer=keys.key("bus"))
        await producer.publish(asked)  # the services sign validation requests with the validator's key

    dead = await read_all(settings, topics.dead_letters, 2, timeout_s=180)
    reasons = sorted(dict(r.headers)["kafkaml-dlq-reason"].decode() for r in dead)
    assert len(reasons) == 2 and reasons[0].startswith("signed with an unknown key") and "unsigned" in reasons[1]
    [record] = await read_all(settings, topics.events, 1, timeout_s=180)
    answer = keys.open(record.value, list(record.headers))  # signed with the validator's key
    assert isinstance(answer, ModelValidationFailed) and answer.correlation_id == asked.event_id
    assert answer.payload.error == "RuntimeError: no key here (line 3)"
