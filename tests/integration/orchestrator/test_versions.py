"""Model versions through the real orchestrator, broker and PostgreSQL: an inference deployed on a
result still training (newest version pinned, a named version, or "latest"); SetModelVersion and a
new version of a followed result end in a SwitchModelVersion on the jobs topic, signed with the
inference's own key (which its replicas verify, and no other inference's key does), after the
version's chunks; what a replica reports serving is recorded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.db.roles import plain_url
from shared.events import (
    ArtifactChunk,
    DeployInference,
    InferenceVersionChanged,
    ModelVersionStored,
    SetModelVersion,
    StopInference,
    SwitchModelVersion,
)
from shared.events.inference import InferenceParams, InferenceRef, ServeSpec
from shared.events.signing import Forged, Key, Keyring, inference_signer
from shared.events.versions import ModelVersion, VersionChange, VersionPolicy
from shared.kafka import Producer, ensure_topics, make_consumer
from shared.settings import Settings
from shared.topics import topics_for
from tests.conftest import service_env
from tests.integration.orchestrator.test_result_ownership import logged
from tests.integration.rows import add_result

pytestmark = pytest.mark.integration

StartService = Callable[..., subprocess.Popen[bytes]]
STREAM = {"input_format": "RAW", "input_config": {"data_type": "float32"}}


async def sql(database: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(plain_url(database))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def add_version(database: str, result_id: int, version: int) -> ModelVersion:
    """A stored version, as the metrics service writes it."""
    data = f"model version {version} ".encode() * 100
    sha256 = hashlib.sha256(data).hexdigest()
    await sql(
        database,
        "INSERT INTO model_versions (result_id, version, sha256, size, format, metrics, data)"
        " VALUES ($1, $2, $3, $4, 'pt', '{}', $5)",
        result_id, version, sha256, len(data), data,
    )  # fmt: skip
    return ModelVersion(result_id=result_id, version=version, sha256=sha256, size=len(data), format="pt")


async def outcome(database: str, command_id: uuid.UUID, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not (rows := await sql(database, "SELECT event FROM command_outcomes WHERE command_id = $1", command_id)):
        assert time.monotonic() < deadline, "the command never ended"
        await asyncio.sleep(0.1)
    event: dict[str, Any] = json.loads(rows[0]["event"])
    return event


async def records(
    settings: Settings, topic: str, until: Callable[[list[Any]], bool], timeout_s: float = 30
) -> list[Any]:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not until(found) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(batch)
    finally:
        await consumer.stop()
    return found


async def start(settings: Settings, run_service: StartService, tmp_path: Path) -> None:
    await ensure_topics(settings)
    env = service_env(settings, database=True) | {"KAFKAML_TRAINER_WARM": ""}
    run_service("services.orchestrator", env, name="orchestrator")
    await logged(tmp_path / "orchestrator-0.log", "orchestrator ready")


async def test_inferences_deploy_on_a_training_result_pinned_or_following(
    settings: Settings, database: str, run_service: StartService, tmp_path: Path
) -> None:
    await start(settings, run_service, tmp_path)
    rows = await add_result(database, "training")
    one, two = [await add_version(database, rows.result, n) for n in (1, 2)]
    async with Producer(settings) as producer:
        commands = {
            wanted: DeployInference(
                payload=InferenceParams(result_id=rows.result, input_topic=f"in-{i}", output_topic=f"out-{i}",
                                        model_version=wanted, **STREAM)  # type: ignore[arg-type]
            )
            for i, wanted in enumerate((None, 1, "latest", 7))
        }  # fmt: skip
        for command in commands.values():
            await producer.publish(command)
        ended = {wanted: await outcome(database, command.event_id) for wanted, command in commands.items()}
        for wanted in (None, 1, "latest"):
            assert ended[wanted]["type"] == "InferenceCreated", ended[wanted]
            await producer.publish(StopInference(payload=InferenceRef(inference_id=ended[wanted]["payload"]["id"])))
    assert ended[7]["type"] == "CommandRejected"
    assert (ended[7]["payload"]["status"], ended[7]["payload"]["field"]) == (422, "model_version")
    found = {
        r["command_id"]: r
        for r in await sql(database, "SELECT command_id, model_version, follow_latest, spec FROM inferences")
    }
    expected = {None: (two, False), 1: (one, False), "latest": (two, True)}
    for wanted, (version, follows) in expected.items():
        row = found[commands[wanted].event_id]
        spec = ServeSpec.model_validate_json(row["spec"])
        assert (row["model_version"], row["follow_latest"]) == (version.version, follows), wanted
        assert (spec.model_version, spec.follow_latest, spec.artifact_sha256) == (
            version.version,
            follows,
            version.sha256,
        )
        assert ended[wanted]["payload"]["model_version"] == (wanted if wanted is not None else 2)


async def add_inference(database: str, result_id: int, model_id: int, keys: Keyring, *, follow: bool) -> ServeSpec:
    """A running inference, as the orchestrator stores one (no replica runs here)."""
    job_id = uuid.uuid4()
    [row] = await sql(
        database,
        "INSERT INTO inferences (result_id, model_id, replicas, input_topic, output_topic, input_format, input_config,"
        " gpus, status, job_id, spec, command_id, model_version, follow_latest) VALUES ($1, $2, 1, 'in', 'out', 'RAW',"
        " '{}', 0, 'running', $3, '{}', gen_random_uuid(), 1, $4) RETURNING id",
        result_id, model_id, job_id, follow,
    )  # fmt: skip
    spec = ServeSpec(
        job_id=str(job_id), inference_id=row["id"], result_id=result_id, framework="pytorch", code="x",
        artifact_sha256="0" * 64, artifact_format="pt", model_version=1, follow_latest=follow, input_topic="in",
        output_topic="out", input_format="RAW", input_config={}, group_id="g",
        signing_key=keys.signing_key(inference_signer(str(job_id), row["id"])),
    )  # fmt: skip
    await sql(database, "UPDATE inferences SET spec = $2::jsonb WHERE id = $1", row["id"], spec.model_dump_json())
    return spec


async def test_switches_are_signed_with_the_inference_key_and_follow_new_versions(
    settings: Settings, database: str, run_service: StartService, tmp_path: Path
) -> None:
    await start(settings, run_service, tmp_path)
    topics = topics_for(settings)
    keys = Keyring([settings.bus_key or ""])
    rows = await add_result(database, "training")
    one, two = [await add_version(database, rows.result, n) for n in (1, 2)]
    following = await add_inference(database, rows.result, rows.model, keys, follow=True)
    pinned = await add_inference(database, rows.result, rows.model, keys, follow=False)
    following_replica = Keyring(own=Key.of(following.signing_key))  # type: ignore[arg-type]  # the spec has one
    pinned_replica = Keyring(own=Key.of(pinned.signing_key))  # type: ignore[arg-type]

    async with Producer(settings) as producer:
        # Promote the pinned one to version 2 (it was on 1).
        command = SetModelVersion(payload=VersionPolicy(inference_id=pinned.inference_id, model_version=2))
        await producer.publish(command)
        done = await outcome(database, command.event_id)
        assert done["type"] == "ModelVersionSet" and done["payload"]["version"] == 2
        # A new version: only the inference that follows the latest switches to it.
        three = await add_version(database, rows.result, 3)
        await producer.publish(ModelVersionStored(payload=three))  # as the metrics service announces it
        change = VersionChange(inference_id=following.inference_id, replica="0", version=3)
        own = Key.of(following.signing_key)  # type: ignore[arg-type]  # the spec carries a key
        await producer.publish(InferenceVersionChanged(payload=change), signer=own)

    found = await records(settings, topics.jobs, lambda got: len(got) >= 2)
    assert len(found) == 2, [r.value[:80] for r in found]
    for record, inference, version, keyring, stranger in (
        (found[0], pinned, two, pinned_replica, following_replica),
        (found[1], following, three, following_replica, pinned_replica),
    ):
        switch = keyring.open(record.value, record.headers)  # the replica's own key verifies it
        assert isinstance(switch, SwitchModelVersion) and record.key == str(inference.inference_id).encode()
        assert (switch.payload.inference_id, switch.payload.version, switch.payload.sha256) == (
            inference.inference_id,
            version.version,
            version.sha256,
        )
        with pytest.raises(Forged):
            stranger.open(record.value, record.headers)  # another inference's key does not

    bus = Keyring([settings.bus_key or ""])
    sent = [bus.open(r.value, r.headers) for r in await records(settings, topics.artifacts, lambda got: len(got) >= 2)]
    assert {(c.payload.version, c.payload.sha256) for c in sent if isinstance(c, ArtifactChunk)} == {
        (2, two.sha256),
        (3, three.sha256),
    }
    deadline = time.monotonic() + 30
    query = "SELECT serving_version, model_version, follow_latest, spec FROM inferences WHERE id = $1"
    while (row := (await sql(database, query, following.inference_id))[0])["serving_version"] != 3:
        assert time.monotonic() < deadline, "the replica's report was not recorded"
        await asyncio.sleep(0.1)
    assert (row["model_version"], row["follow_latest"]) == (3, True)
    assert ServeSpec.model_validate_json(row["spec"]).model_version == 3  # what a relaunch starts from
    [kept] = await sql(database, query, pinned.inference_id)
    assert (kept["model_version"], kept["follow_latest"], one.version) == (2, False, 1)
