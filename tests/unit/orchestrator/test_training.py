"""Training handlers against an in-memory unit of work."""

from __future__ import annotations

from services.orchestrator.handlers import make_router
from services.orchestrator.training import JobDefaults
from shared.db.tables import Datasource
from shared.events import CommandRejected, ConfigurationDefinition, CreateConfiguration, ModelDefinition
from shared.events.datasources import DatasourceSent, SendDatasource, SendDatasourcePayload
from shared.events.training import (
    ArtifactRef,
    ArtifactRejected,
    DeploymentCreated,
    DeployTraining,
    Failure,
    RejectedArtifact,
    ResultStored,
    SampleCounts,
    StatusChange,
    StopTraining,
    StopTrainingPayload,
    StoredResult,
    TrainingFailed,
    TrainingFinished,
    TrainingOutcome,
    TrainingParams,
    TrainingStatusChanged,
    TrainingStopped,
    TrainJob,
    deployment_status,
)
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.orchestrator.test_handlers import create, definition

ROUTER = make_router()


async def configured(uow: FakeUnitOfWork, *defs: ModelDefinition) -> tuple[int, list[int]]:
    ids = [await create(uow, d) for d in defs]
    tops = [i for i, d in zip(ids, defs, strict=True) if d.upper_model_id is None]
    command = CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=tops))
    [created] = await ROUTER(command, uow)
    return created.payload.id, ids  # type: ignore[attr-defined]


async def deploy(uow: FakeUnitOfWork, configuration_id: int, **params: object) -> list[object]:
    command = DeployTraining(payload=TrainingParams(configuration_id=configuration_id, **params))  # type: ignore[arg-type]
    return await ROUTER(command, uow)


async def test_one_result_and_one_job_per_model() -> None:
    uow = FakeUnitOfWork()
    configuration, models = await configured(uow, definition("a"), definition("b", framework="pytorch"))
    created, *jobs = await deploy(uow, configuration, fit={"epochs": 3}, confusion_matrix=True)
    assert isinstance(created, DeploymentCreated)
    assert sorted(r.model_id for r in created.payload.results) == sorted(models)
    assert all(r.status == "created" for r in created.payload.results)
    assert len(jobs) == 2 and all(isinstance(j, TrainJob) for j in jobs)
    frameworks = {j.payload.framework for j in jobs}  # type: ignore[attr-defined]
    assert frameworks == {"tensorflow", "pytorch"}


async def test_unknown_fit_key_is_refused_naming_it() -> None:
    uow = FakeUnitOfWork()
    configuration, _ = await configured(uow, definition("a"))
    [rejected] = await deploy(uow, configuration, fit={"epochs": 3, "epohcs": 1})
    assert isinstance(rejected, CommandRejected)
    assert rejected.payload.field == "fit.epohcs" and rejected.payload.status == 422
    assert not uow.deployments.rows


async def test_distributed_chain_is_one_job_bottom_first() -> None:
    uow = FakeUnitOfWork()
    cloud = await create(uow, definition("cloud"))
    fog = await create(uow, definition("fog", upper=cloud))
    edge = await create(uow, definition("edge", upper=fog))
    command = CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=[cloud]))
    [config] = await ROUTER(command, uow)
    created, job = await deploy(uow, config.payload.id, distributed={"optimizer": "adam"})  # type: ignore[attr-defined]
    assert isinstance(job, TrainJob)
    assert [m.model_id for m in job.payload.models] == [edge, fog, cloud]
    assert job.payload.distributed is not None
    assert len(created.payload.results) == 3  # type: ignore[attr-defined]


async def test_states_move_forward_only_and_failure_keeps_its_reason() -> None:
    uow = FakeUnitOfWork()
    configuration, _ = await configured(uow, definition("a"))
    created, _job = await deploy(uow, configuration)
    result = created.payload.results[0].id  # type: ignore[attr-defined]
    deployment = created.payload.id  # type: ignore[attr-defined]

    async def move(status: str) -> None:
        change = StatusChange(result_id=result, deployment_id=deployment, status=status)  # type: ignore[arg-type]
        await ROUTER(TrainingStatusChanged(payload=change), uow)

    await move("training")
    await move("waiting_data")  # late, out of order: ignored
    assert uow.training.rows[result].status == "training"
    failure = Failure(result_id=result, deployment_id=deployment, error="model.fit raised ValueError")
    await ROUTER(TrainingFailed(payload=failure), uow)
    await move("training")
    assert (uow.training.rows[result].status, uow.training.rows[result].error) == ("failed", failure.error)


async def test_stop_marks_the_whole_job_and_names_it() -> None:
    uow = FakeUnitOfWork()
    cloud = await create(uow, definition("cloud"))
    await create(uow, definition("edge", upper=cloud))
    command = CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=[cloud]))
    [config] = await ROUTER(command, uow)
    created, job = await deploy(uow, config.payload.id)  # type: ignore[attr-defined]
    first = created.payload.results[0].id  # type: ignore[attr-defined]
    stop = StopTraining(payload=StopTrainingPayload(result_id=first))
    [stopped] = await ROUTER(stop, uow)
    assert isinstance(stopped, TrainingStopped) and stopped.payload.job_id == job.payload.job_id  # type: ignore[attr-defined]
    assert {r.status for r in uow.training.rows.values()} == {"stopped"}
    [again] = await ROUTER(StopTraining(payload=stop.payload), uow)
    assert isinstance(again, CommandRejected) and again.payload.status == 409


async def test_send_datasource_builds_the_upstream_control_message() -> None:
    uow = FakeUnitOfWork()
    configuration, _ = await configured(uow, definition("a"))
    created, _ = await deploy(uow, configuration)
    uow.datasources.rows[1] = Datasource(
        id=1,
        deployment_id=99,
        topic="data:0:0:10",
        input_format="RAW",
        input_config={"data_type": "uint8"},
        validation_rate=0.1,
        test_rate=0.1,
        total_msg=10,
        description="d",
        unsupervised_topic=None,
        dataset_restrictions={},
        incremental=False,
        control_topic="ctl",
        partition=0,
        offset=3,
    )
    target = created.payload.id  # type: ignore[attr-defined]
    send = SendDatasource(payload=SendDatasourcePayload(datasource_id=1, deployment_id=target))
    [sent] = await ROUTER(send, uow)
    assert isinstance(sent, DatasourceSent)
    assert sent.payload.control_message["topic"] == "data:0:0:10" and sent.payload.deployment_id == target
    missing = SendDatasource(payload=SendDatasourcePayload(datasource_id=1, deployment_id=12345))
    [rejected] = await ROUTER(missing, uow)
    assert isinstance(rejected, CommandRejected) and rejected.payload.field == "deployment_id"


def test_deployment_status_summarises_results() -> None:
    assert deployment_status([]) == "created"
    assert deployment_status(["finished", "training"]) == "training"
    assert deployment_status(["finished", "finished"]) == "finished"
    assert deployment_status(["finished", "failed"]) == "failed"
    assert deployment_status(["finished", "stopped"]) == "stopped"


def trainer_finished(result: int, deployment: int, sha256: str = "ab" * 32) -> TrainingFinished:
    artifact = ArtifactRef(format="keras", size=10, sha256=sha256, chunks=1)
    outcome = TrainingOutcome(
        result_id=result,
        deployment_id=deployment,
        training_time=1.0,
        artifact=artifact,
        samples=SampleCounts(train=8, validation=1, test=1),
    )
    return TrainingFinished(payload=outcome)


async def test_a_result_is_finished_only_once_the_metrics_service_stored_it() -> None:
    uow = FakeUnitOfWork()
    configuration, _ = await configured(uow, definition("a"))
    created, _job = await deploy(uow, configuration)
    result = created.payload.results[0].id  # type: ignore[attr-defined]
    deployment = created.payload.id  # type: ignore[attr-defined]
    change = StatusChange(result_id=result, deployment_id=deployment, status="training")
    await ROUTER(TrainingStatusChanged(payload=change), uow)

    await ROUTER(trainer_finished(result, deployment), uow)
    assert uow.training.rows[result].status == "training", "the trainer's word alone does not finish a result"
    await ROUTER(ResultStored(payload=StoredResult(result_id=result, sha256="ab" * 32, size=10)), uow)
    assert uow.training.rows[result].status == "finished"


async def test_a_rejected_artifact_fails_the_result_with_the_reason() -> None:
    uow = FakeUnitOfWork()
    configuration, _ = await configured(uow, definition("a"))
    created, _job = await deploy(uow, configuration)
    result = created.payload.results[0].id  # type: ignore[attr-defined]
    await ROUTER(trainer_finished(result, created.payload.id), uow)  # type: ignore[attr-defined]
    await ROUTER(ArtifactRejected(payload=RejectedArtifact(result_id=result, error="corrupted")), uow)
    assert (uow.training.rows[result].status, uow.training.rows[result].error) == ("failed", "corrupted")


async def test_a_job_spec_larger_than_a_message_is_refused_413_and_nothing_is_stored() -> None:
    uow = FakeUnitOfWork()
    big = ModelDefinition(name="big", framework="tensorflow", code="x = 1\n" * 60_000)  # 360 kB of code
    configuration, _ = await configured(uow, big)
    router = make_router(JobDefaults(max_message_bytes=256 * 1024))
    command = DeployTraining(payload=TrainingParams(configuration_id=configuration))
    [answer] = await router(command, uow)
    assert isinstance(answer, CommandRejected), answer
    assert answer.payload.status == 413 and "KAFKAML_MESSAGE_MAX_BYTES" in answer.payload.detail
    assert not uow.deployments.rows and not uow.training.rows, "refused before anything was stored"
