"""Training handlers: deployments, jobs, result states, stops."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.control import ControlMessage
from shared.db.tables import Datasource, Deployment, Model, TrainingJob, TrainingResult
from shared.db.uow import UnitOfWork
from shared.errors import Rejected, TooLarge
from shared.events import Envelope
from shared.events.datasources import DatasourceResent, DatasourceSent, SendDatasource
from shared.events.signing import Keyring, SigningKey, job_signer
from shared.events.training import (
    TERMINAL_STATUSES,
    ArtifactRejected,
    DatasourceRef,
    DeploymentCreated,
    DeploymentRecord,
    DeployTraining,
    JobModel,
    JobSpec,
    ResultRef,
    ResultStatus,
    ResultStored,
    StopTraining,
    StopTrainingPayload,
    TrainingFailed,
    TrainingFinished,
    TrainingParams,
    TrainingStatusChanged,
    TrainingStopped,
    TrainJob,
)
from shared.frameworks import check_training_params
from shared.kafka import too_large
from shared.settings import Settings


@dataclass(frozen=True)
class JobDefaults:
    """What every training job spec takes from the orchestrator's settings."""

    data_timeout_s: float = 3600.0
    cache_mb: int = 2048
    # A spec must fit one Kafka message (it carries the models' code).
    max_message_bytes: int = 1024 * 1024
    # Derives each job's signing key (shared.events.signing); None: specs carry no key.
    keys: Keyring | None = None

    @classmethod
    def of(cls, settings: Settings, keys: Keyring | None = None) -> JobDefaults:
        return cls(
            data_timeout_s=settings.data_timeout_s,
            cache_mb=settings.trainer_cache_mb,
            max_message_bytes=settings.message_max_bytes,
            keys=keys,
        )

    def signing_key(self, signer: str) -> SigningKey | None:
        """The key a job's worker signs its events with, for its spec."""
        return self.keys.signing_key(signer) if self.keys is not None else None

    def check_fits(self, message: Envelope) -> None:
        """Refuses (413) a job whose spec would not fit one message: checked before anything
        is stored, on the spec as it will be but for its ids (a margin covers their digits)."""
        size = len(message.to_bytes()) + SPEC_ID_MARGIN_BYTES
        if size > self.max_message_bytes:
            raise TooLarge(too_large(f"the {message.type} of this job", size, self.max_message_bytes))


# Room in a spec checked before its rows (and so its ids) exist.
SPEC_ID_MARGIN_BYTES = 1024

# A trainer reads the control topic from this long before its job was created: announcements
# the control logger had not recorded yet when the job's spec was written (it lags, or clocks
# differ) are found there. Only a control logger more than this behind could make one be missed.
CONTROL_LOOKBACK_S = 300


def announcement(row: Datasource) -> DatasourceRef:
    """A recorded data source as the trainer reads it from its spec."""
    return DatasourceRef(
        control_topic=row.control_topic,
        partition=row.partition,
        offset=row.offset,
        timestamp=row.record_timestamp if row.record_timestamp >= 0 else None,
        deployment_id=row.deployment_id,
        topic=row.topic,
        input_format=row.input_format,
        input_config=row.input_config,
        validation_rate=row.validation_rate,
        test_rate=row.test_rate,
        total_msg=row.total_msg,
    )


# Forward moves only: a late "training" never undoes "finished".
ORDER = {"created": 0, "waiting_data": 1, "training": 2, "finished": 3, "failed": 3, "stopped": 3}


def chains(models: list[Model]) -> list[list[Model]]:
    """Groups a configuration's models into jobs: each distributed chain is one job,
    ordered bottom (edge) first; a model on its own is a job of one."""
    ids = {m.id for m in models}
    below: dict[int, list[Model]] = {}
    for model in models:
        if model.upper_model_id in ids:
            below.setdefault(model.upper_model_id, []).append(model)
    jobs = []
    for top in (m for m in models if m.upper_model_id not in ids):
        chain, pending = [], [top]
        while pending:
            current = pending.pop()
            chain.append(current)
            pending.extend(below.get(current.id, []))
        jobs.append(list(reversed(chain)))
    return jobs


async def deploy_training(
    command: DeployTraining, uow: UnitOfWork, *, defaults: JobDefaults = JobDefaults()
) -> list[Envelope]:
    """Records the deployment and one result per model; asks for one trainer per job."""
    params = command.payload
    if await uow.deployments.by_command(command.event_id) is not None:
        return []  # the stored answer of the first delivery is published again by handle_once
    configuration = await uow.configurations.get(params.configuration_id)
    if configuration is None:
        raise Rejected(
            422,
            f"configuration {params.configuration_id} does not exist",
            field="configuration_id",
        )
    model_ids: list[int] = (await uow.configurations.model_ids([configuration.id]))[configuration.id]
    models = [m for m in [await uow.models.get(i) for i in model_ids] if m is not None]
    for framework in sorted({m.framework for m in models}):
        for section, values in (("fit", params.fit), ("evaluate", params.evaluate)):
            problem = check_training_params(framework, section, values)
            if problem:
                raise Rejected(422, problem[1], field=problem[0])
    jobs = chains(models)
    if params.incremental is not None and any(len(chain) > 1 for chain in jobs):
        raise Rejected(
            422,
            "incremental training of a distributed chain is not supported yet: deploy its models in a "
            "configuration without upper_model_id links, or train the chain bounded",
            field="incremental",
        )
    for chain in jobs:
        if len(chain) > 1 and chain[0].framework != "tensorflow":
            raise Rejected(
                422,
                "distributed chains are trained with TensorFlow only",
                field="configuration_id",
            )
    for chain in jobs:  # before anything is stored: every spec must fit one message
        placeholder = job_spec(str(command.event_id), 0, chain, [0] * len(chain), params, defaults)
        defaults.check_fits(TrainJob(payload=placeholder))

    deployment = await uow.deployments.add(
        Deployment(
            configuration_id=configuration.id,
            batch_size=params.batch_size,
            fit=params.fit,
            evaluate=params.evaluate,
            confusion_matrix=params.confusion_matrix,
            gpus=params.gpus,
            distributed=params.distributed.model_dump(mode="json") if params.distributed else None,
            incremental=params.incremental.model_dump(mode="json") if params.incremental else None,
            command_id=command.event_id,
        )
    )
    # Data may have been announced before the deployment (keyed by the id it was going to have).
    announced = [announcement(row) for row in await uow.datasources.of_deployment(deployment.id) if row.lost is None]
    since_ms = int(deployment.created_at.timestamp() * 1000) - CONTROL_LOOKBACK_S * 1000
    answers: list[Envelope] = []
    refs: list[ResultRef] = []
    for chain in jobs:
        job_id = uuid.uuid5(command.event_id, str(chain[0].id))  # stable across redeliveries
        results = [
            TrainingResult(deployment_id=deployment.id, model_id=m.id, job_id=job_id, status="created") for m in chain
        ]
        job = TrainingJob(id=job_id, deployment_id=deployment.id, spec={})
        await uow.training.add_job(job, results)
        spec = job_spec(str(job_id), deployment.id, chain, [r.id for r in results], params, defaults)
        spec = spec.model_copy(update={"announced": announced, "control_since_ms": since_ms})
        job.spec = spec.model_dump(mode="json")
        answers.append(command.reply(TrainJob(payload=spec)))
        refs.extend(ResultRef(id=r.id, model_id=r.model_id, status="created") for r in results)
    record = DeploymentRecord(
        **params.model_dump(),
        id=deployment.id,
        status="created",
        created_at=deployment.created_at,
        results=sorted(refs, key=lambda r: r.id),
    )
    return [command.reply(DeploymentCreated(payload=record)), *answers]


def job_spec(
    job_id: str,
    deployment_id: int,
    chain: list[Model],
    result_ids: list[int],
    params: TrainingParams,
    defaults: JobDefaults,
) -> JobSpec:
    """What a trainer needs for one job: its models' code, the parameters, the limits."""
    return JobSpec(
        job_id=job_id,
        deployment_id=deployment_id,
        framework=chain[0].framework,
        models=[
            JobModel(
                result_id=result_id,
                model_id=m.id,
                name=m.name,
                code=m.code,
                imports=m.imports,
                upper_model_id=m.upper_model_id if len(chain) > 1 else None,
            )
            for m, result_id in zip(chain, result_ids, strict=True)
        ],
        batch_size=params.batch_size,
        fit=params.fit,
        evaluate=params.evaluate,
        confusion_matrix=params.confusion_matrix,
        gpus=params.gpus,
        distributed=params.distributed if len(chain) > 1 else None,
        data_timeout_s=defaults.data_timeout_s,
        cache_mb=defaults.cache_mb,
        signing_key=defaults.signing_key(job_signer(job_id, result_ids)),
        incremental=params.incremental,
    )


async def move_result(uow: UnitOfWork, result_id: int, status: ResultStatus, **changes: object) -> bool:
    """Moves a result forward; False when it is unknown or already past ``status``."""
    result = await uow.training.result(result_id, for_update=True)
    if result is None or result.status in TERMINAL_STATUSES or ORDER[status] < ORDER[result.status]:
        return False
    result.status = status
    for name, value in changes.items():
        setattr(result, name, value)
    return True


async def training_status_changed(event: TrainingStatusChanged, uow: UnitOfWork) -> list[Envelope]:
    change = event.payload
    datasource = change.datasource.model_dump(mode="json") if change.datasource else None
    extra: dict[str, object] = {"error": change.error} if change.error else {}
    if datasource:
        extra["datasource"] = datasource
    await move_result(uow, change.result_id, change.status, **extra)
    return []


async def training_finished(event: TrainingFinished, uow: UnitOfWork) -> list[Envelope]:
    """The trainer is done; the result stays ``training`` until the metrics service has stored
    its metrics and model (``ResultStored``): the orchestrator alone says ``finished``."""
    outcome = event.payload
    if outcome.datasource:
        await move_result(uow, outcome.result_id, "training", datasource=outcome.datasource.model_dump(mode="json"))
    return []


async def result_stored(event: ResultStored, uow: UnitOfWork) -> list[Envelope]:
    """Everything a user downloads is stored: the result is finished. (An incremental training's
    versions, ``ModelVersionStored``, leave it ``training``: only its TrainingFinished ends it.)"""
    await move_result(uow, event.payload.result_id, "finished")
    return []


async def artifact_rejected(event: ArtifactRejected, uow: UnitOfWork) -> list[Envelope]:
    await move_result(uow, event.payload.result_id, "failed", error=event.payload.error)
    return []


async def training_failed(event: TrainingFailed, uow: UnitOfWork) -> list[Envelope]:
    await move_result(uow, event.payload.result_id, "failed", error=event.payload.error)
    return []


async def stop_training(command: StopTraining, uow: UnitOfWork) -> list[Envelope]:
    """Marks every active result of the job stopped; the runtime then stops the process."""
    result_id = command.payload.result_id
    result = await uow.training.result(result_id)
    if result is None:
        raise Rejected(404, f"result {result_id} does not exist")
    if result.status in TERMINAL_STATUSES:
        raise Rejected(409, f"result {result_id} is already {result.status}")
    for sibling in await uow.training.results(job_id=result.job_id):
        await move_result(uow, sibling.id, "stopped", error="stopped by a user")
    payload = StopTrainingPayload(result_id=result_id, job_id=str(result.job_id))
    return [command.reply(TrainingStopped(payload=payload))]


async def send_datasource(command: SendDatasource, uow: UnitOfWork) -> list[Envelope]:
    """Announces a recorded data set to another deployment; the runtime sends the
    control message after the commit."""
    request = command.payload
    datasource = await uow.datasources.get(request.datasource_id)
    if datasource is None:
        raise Rejected(404, f"data source {request.datasource_id} does not exist")
    if await uow.deployments.get(request.deployment_id) is None:
        raise Rejected(
            422,
            f"deployment {request.deployment_id} does not exist",
            field="deployment_id",
        )
    control = ControlMessage(
        topic=datasource.topic,
        input_format=datasource.input_format,
        input_config=datasource.input_config,
        validation_rate=datasource.validation_rate,
        test_rate=datasource.test_rate,
        total_msg=datasource.total_msg,
        description=datasource.description,
        unsupervised_topic=datasource.unsupervised_topic,
        dataset_restrictions=datasource.dataset_restrictions,
        incremental=datasource.incremental,
    )
    payload = DatasourceResent(
        datasource_id=datasource.id,
        deployment_id=request.deployment_id,
        control_message=control.model_dump(mode="json"),
    )
    return [command.reply(DatasourceSent(payload=payload))]
