"""Which switches a replica obeys, and the version header of its outputs (pure logic, fakes only)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.inferencer.routing import Router
from services.inferencer.switching import SwitchListener, switched
from shared.events.inference import ServeModel, ServeSpec
from shared.events.signing import Key, Keyring, inference_signer
from shared.events.versions import MODEL_VERSION_HEADER, SwitchModelVersion, VersionSwitch
from shared.settings import Settings

BUS = "unit-bus-key"


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "t.jobs"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


class Letters:
    """A producer that only records dead letters."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def dead_letter(self, topic: str, received: Any, reason: str, *, consumer: str) -> None:
        self.reasons.append(reason)


def spec(inference_id: int = 7) -> ServeSpec:
    signing = Keyring([BUS]).signing_key(inference_signer("job-1", inference_id))
    return ServeSpec(
        job_id="job-1", inference_id=inference_id, result_id=3, framework="tensorflow", code="model = None",
        artifact_sha256="a" * 64, artifact_format="keras", input_topic="in", output_topic="out",
        input_format="RAW", input_config={}, group_id="g", signing_key=signing,
    )  # fmt: skip


def record(message: Any, key: Key | None) -> Record:
    value = message.to_bytes()
    headers = [key.header(message, value)] if key is not None else []
    return Record(message.key(), value, headers)


def a_switch(inference_id: int = 7, result_id: int = 3, version: int = 2) -> SwitchModelVersion:
    payload = VersionSwitch(
        inference_id=inference_id, result_id=result_id, version=version, sha256="b" * 64, format="keras"
    )
    return SwitchModelVersion(payload=payload)


def check(listener: SwitchListener, rec: Record) -> VersionSwitch | None:
    return asyncio.run(listener.check(rec))


def listener() -> tuple[SwitchListener, Letters]:
    letters = Letters()
    return SwitchListener(Settings(topic_prefix="t"), spec(), letters), letters  # type: ignore[arg-type]  # the fake


def test_only_a_switch_for_our_inference_signed_with_our_key_is_obeyed() -> None:
    ours, letters = listener()
    own = Key.of(spec().signing_key)  # type: ignore[arg-type]  # the spec has one
    found = check(ours, record(a_switch(), own))
    assert found is not None and found.version == 2 and letters.reasons == []
    assert switched(spec(), found).model_dump(include={"artifact_sha256", "model_version"}) == {
        "artifact_sha256": "b" * 64,
        "model_version": 2,
    }
    # Another inference's switch (signed by its own key) and a trainer's spec: not ours, nothing said.
    theirs = Keyring([BUS]).key(inference_signer("job-2", 8))
    assert check(ours, record(a_switch(inference_id=8), theirs)) is None
    assert check(ours, record(ServeModel(payload=spec(8)), None)) is None
    assert letters.reasons == []


def test_what_is_addressed_to_us_but_not_obeyed_is_dead_lettered_with_the_reason() -> None:
    ours, letters = listener()
    own = Key.of(spec().signing_key)  # type: ignore[arg-type]  # the spec has one
    forged = Keyring(["another-bus-key"]).key(inference_signer("job-1", 7))
    assert check(ours, record(a_switch(), forged)) is None
    assert check(ours, record(a_switch(), Keyring([BUS]).key())) is None  # even the bus key: a replica has none
    assert check(ours, record(a_switch(), None)) is None
    assert check(ours, record(a_switch(result_id=4), own)) is None
    assert check(ours, Record(b"7", b"not json")) is None
    assert len(letters.reasons) == 5
    assert all("does not verify" in reason for reason in letters.reasons[:3])
    assert "unsigned" in letters.reasons[2]
    assert "result 4" in letters.reasons[3] and "not a Kafka-ML message" in letters.reasons[4]


def test_every_output_names_the_version_once_and_a_switch_changes_it() -> None:
    router = Router(spec(), None, distributed=False, version=1)  # type: ignore[arg-type]  # not sent here
    router._partition_counts["out"] = 2
    records = [
        Record(b"1", b"x", []),
        Record(b"2", b"x", [("source", b"s"), (MODEL_VERSION_HEADER, b"9")]),  # a stale one is replaced
    ]
    outputs: list[Any] = []
    asyncio.run(router.route(records, [0, 1], [np.ones((2, 3), dtype=np.float32)], outputs, []))
    assert [o[4] for o in outputs] == [[(MODEL_VERSION_HEADER, b"1")], [("source", b"s"), (MODEL_VERSION_HEADER, b"1")]]
    router.set_version(12)
    outputs.clear()
    asyncio.run(router.route(records, [0, 1], [np.ones((2, 3), dtype=np.float32)], outputs, []))
    assert [o[4][-1] for o in outputs] == [(MODEL_VERSION_HEADER, b"12")] * 2
