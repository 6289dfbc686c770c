"""Inference handlers against an in-memory unit of work."""

from __future__ import annotations

from typing import Any

from services.orchestrator.handlers import make_router
from shared.db.tables import Artifact
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
        uow.inferences.artifacts[result_id] = (
            Artifact(result_id=result_id, sha256="ab" * 32, size=3, data=b"abc"),
            "keras",
        )
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
    assert spec.payload.replicas == 2 and spec.payload.artifact_sha256 == "ab" * 32
    assert spec.payload.group_id.startswith("kafkaml-inference-")


async def test_only_finished_results_with_a_stored_model_are_served() -> None:
    uow = FakeUnitOfWork()
    training = await trained(uow, finished=False)
    [busy] = await serve(uow, result_id=training)
    assert isinstance(busy, CommandRejected) and busy.payload.status == 409
    [missing] = await serve(uow, result_id=999)
    assert isinstance(missing, CommandRejected) and missing.payload.field == "result_id"
    unstored = await trained(uow, stored=False)
    [later] = await serve(uow, result_id=unstored)
    assert isinstance(later, CommandRejected) and "not stored yet" in later.payload.detail


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
