"""Inference handlers against an in-memory unit of work."""

from __future__ import annotations

from typing import Any

import pytest

from services.orchestrator import app
from services.orchestrator.handlers import make_router
from services.orchestrator.inference import DEFAULT_TOPICS
from shared.events import CommandRejected
from shared.events.inference import (
    DeleteInference,
    DeployInference,
    InferenceCreated,
    InferenceDeleted,
    InferenceParams,
    InferenceRef,
    InferenceStatusChange,
    InferenceStatusChanged,
    InferenceStopped,
    ServeModel,
    StopInference,
)
from shared.settings import Settings
from shared.topics import Topics, TopicSpec
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.orchestrator.test_handlers import definition
from tests.unit.orchestrator.test_training import configured, deploy

ROUTER = make_router()

DATASOURCE = {
    "control_topic": "ctl", "partition": 0, "offset": 0, "deployment_id": 1, "topic": "d:0:0:10",
    "input_format": "RAW", "input_config": {"data_type": "uint8", "data_reshape": "8 8"},
    "validation_rate": 0.1, "test_rate": 0.1, "total_msg": 10,
}  # fmt: skip


async def trained(uow: FakeUnitOfWork, *, finished: bool = True, stored: bool = True) -> int:
    configuration, _ = await configured(uow, definition("a"))
    created, _job = await deploy(uow, configuration)
    result_id: int = created.payload.results[0].id  # type: ignore[attr-defined]
    result = uow.training.rows[result_id]
    result.status = "finished" if finished else "training"
    result.datasource = DATASOURCE
    if stored:
        uow.versions.put(result_id, 1, b"abc")
    return result_id


async def serve(uow: FakeUnitOfWork, **params: Any) -> list[Any]:
    body = {"input_topic": "in", "output_topic": "out", **params}
    return await ROUTER(DeployInference(payload=InferenceParams(**body)), uow)


async def test_format_and_config_default_to_the_training_stream() -> None:
    uow = FakeUnitOfWork()
    result = await trained(uow)
    created, spec = await serve(uow, result_id=result, replicas=2)
    assert isinstance(created, InferenceCreated) and isinstance(spec, ServeModel)
    assert (created.payload.input_format, created.payload.input_config) == ("RAW", DATASOURCE["input_config"])
    assert created.payload.status == "starting"
    assert spec.payload.replicas == 2 and spec.payload.artifact_sha256 == uow.versions.rows[(result, 1)].sha256
    assert spec.payload.group_id.startswith("kafkaml-inference-")


async def test_results_with_a_stored_version_are_served_even_while_training() -> None:
    uow = FakeUnitOfWork()
    training = await trained(uow, finished=False)
    created, spec = await serve(uow, result_id=training)
    assert isinstance(created, InferenceCreated) and spec.payload.model_version == 1
    [missing] = await serve(uow, result_id=999)
    assert isinstance(missing, CommandRejected) and missing.payload.field == "result_id"
    unstored = await trained(uow, finished=False, stored=False)
    [later] = await serve(uow, result_id=unstored)
    assert isinstance(later, CommandRejected) and later.payload.status == 409
    assert "no stored model yet" in later.payload.detail


async def test_bad_input_config_and_half_distributed_settings_are_refused() -> None:
    uow = FakeUnitOfWork()
    result = await trained(uow)
    [bad] = await serve(uow, result_id=result, input_format="RAW", input_config={"data_type": "int99"})
    assert isinstance(bad, CommandRejected) and bad.payload.field == "input_config"
    [half] = await serve(uow, result_id=result, upper_topic="up")
    assert isinstance(half, CommandRejected) and half.payload.field == "limit"


async def test_status_moves_forward_and_stop_then_delete_name_the_job() -> None:
    uow = FakeUnitOfWork()
    created, spec = await serve(uow, result_id=await trained(uow))
    inference = created.payload.id

    async def report(status: str, error: str | None = None) -> None:
        change = InferenceStatusChange(inference_id=inference, status=status, replica="0", error=error)  # type: ignore[arg-type]
        await ROUTER(InferenceStatusChanged(payload=change), uow)

    await report("running")
    await report("starting")  # late: ignored
    assert uow.inferences.rows[inference].status == "running"
    [stopped] = await ROUTER(StopInference(payload=InferenceRef(inference_id=inference)), uow)
    assert isinstance(stopped, InferenceStopped) and stopped.payload.job_id == spec.payload.job_id
    await report("failed", "boom")  # after a stop: stays stopped
    assert uow.inferences.rows[inference].status == "stopped"
    [again] = await ROUTER(StopInference(payload=InferenceRef(inference_id=inference)), uow)
    assert isinstance(again, CommandRejected) and again.payload.status == 409
    [deleted] = await ROUTER(DeleteInference(payload=InferenceRef(inference_id=inference)), uow)
    assert isinstance(deleted, InferenceDeleted) and inference not in uow.inferences.rows


async def test_a_replica_failure_fails_the_inference_with_its_reason() -> None:
    uow = FakeUnitOfWork()
    created, _ = await serve(uow, result_id=await trained(uow))
    change = InferenceStatusChange(
        inference_id=created.payload.id, status="failed", replica="1", error="model load failed"
    )
    await ROUTER(InferenceStatusChanged(payload=change), uow)
    row = uow.inferences.rows[created.payload.id]
    assert (row.status, row.error) == ("failed", "replica 1: model load failed")


# --- the stack's own topics are not an inference's -----------------------------------------


def internal_names(topics: Topics) -> list[str]:
    return [topics.commands, topics.events, topics.validation, topics.jobs, topics.artifacts, topics.dead_letters]


@pytest.mark.parametrize("field", ["input_topic", "output_topic", "upper_topic"])
async def test_an_inference_on_an_internal_topic_is_refused_naming_the_field(field: str) -> None:
    uow = FakeUnitOfWork()
    result = await trained(uow)
    for name in [*internal_names(DEFAULT_TOPICS), DEFAULT_TOPICS.control, "kafkaml.anything", "__consumer_offsets"]:
        [refused] = await serve(uow, result_id=result, limit=0.5, **{field: name})
        assert isinstance(refused, CommandRejected), name
        assert (refused.payload.status, refused.payload.field) == (422, field)
        assert name in refused.payload.detail
    assert uow.inferences.rows == {}


async def test_the_internal_topics_are_the_settings_ones() -> None:
    topics = Topics(prefix="stack2", control="announcements")
    router = make_router(topics=topics)
    uow = FakeUnitOfWork()
    result = await trained(uow)

    async def deploy_on(**names: str) -> Any:
        body = {"result_id": result, "input_topic": "in", "output_topic": "out", **names}
        return (await router(DeployInference(payload=InferenceParams(**body)), uow))[0]

    for name in [*internal_names(topics), "announcements"]:
        refused = await deploy_on(input_topic=name)
        assert isinstance(refused, CommandRejected) and refused.payload.field == "input_topic", name
    # Another stack's names, a name that merely starts like the prefix: ordinary topics here.
    for name in ["kafkaml.commands", "KAFKA_ML_CONTROL_TOPIC", "stack2-in", "stack2"]:
        assert isinstance(await deploy_on(input_topic=name), InferenceCreated), name


async def test_an_ordinary_topic_is_accepted() -> None:
    uow = FakeUnitOfWork()
    created, spec = await serve(
        uow,
        result_id=await trained(uow),
        input_topic="sensors.in",
        output_topic="kafkaml-out",
        upper_topic="up",
        limit=0.5,
    )
    assert isinstance(created, InferenceCreated) and isinstance(spec, ServeModel)
    assert (spec.payload.input_topic, spec.payload.output_topic, spec.payload.upper_topic) == (
        "sensors.in",
        "kafkaml-out",
        "up",
    )


async def test_a_json_input_config_with_an_overflowing_shape_is_refused() -> None:
    uow = FakeUnitOfWork()
    result = await trained(uow)
    [bad] = await serve(
        uow, result_id=result, input_format="JSON", input_config={"data_reshape": "4294967296 4294967296"}
    )
    assert isinstance(bad, CommandRejected) and bad.payload.field == "input_config"
    assert "over the limit" in bad.payload.detail


async def test_only_the_input_topic_is_ever_grown(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[tuple[str, int]], bool]] = []

    async def create_topics(settings: Settings, specs: list[TopicSpec], *, grow: bool = False) -> None:
        calls.append(([(s.name, s.partitions) for s in specs], grow))

    monkeypatch.setattr(app, "create_topics", create_topics)
    uow = FakeUnitOfWork()
    _, spec = await serve(uow, result_id=await trained(uow), replicas=3, upper_topic="up", limit=0.5)
    await app.ensure_inference_topics(Settings(), spec.payload)
    assert calls == [([("in", 3)], True), ([("out", 1), ("up", 1)], False)]
