"""Inference handlers: serve a trained model on topics, follow its replicas, stop, delete."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import ValidationError

from services.orchestrator.training import JobDefaults
from shared.control import AvroConfig, JsonConfig, RawConfig
from shared.db.records import inference_record
from shared.db.tables import Inference, ModelVersionRow
from shared.db.uow import UnitOfWork
from shared.errors import Rejected
from shared.events import Envelope
from shared.events.inference import (
    DeleteInference,
    DeployInference,
    InferenceCreated,
    InferenceDeleted,
    InferenceParams,
    InferenceRef,
    InferenceStatusChanged,
    InferenceStopped,
    ServeModel,
    ServeSpec,
    StopInference,
)
from shared.events.signing import inference_signer
from shared.settings import Settings
from shared.topics import Topics

DEFAULTS = JobDefaults()
MAX_VERSION = 2**31 - 1
ORDER = {"starting": 0, "running": 1, "stopped": 2, "failed": 2}

# The stack's topics with the default settings: what a router built without settings protects.
DEFAULT_TOPICS = Topics(
    prefix=Settings.model_fields["topic_prefix"].default, control=Settings.model_fields["control_topic"].default
)


def check_topics(params: InferenceParams, topics: Topics) -> None:
    """Refuses an inference that would read or write a topic of the stack itself.

    Its replicas would consume commands or events as inputs and publish predictions
    among them, and the orchestrator would grow the topic's partitions. The whole
    ``<prefix>.`` namespace is the stack's, the control topic too, and names starting
    with ``__`` are the broker's own.
    """
    namespace = f"{topics.prefix}."
    for field, name in (
        ("input_topic", params.input_topic),
        ("output_topic", params.output_topic),
        ("upper_topic", params.upper_topic),
    ):
        if name is None:
            continue
        if name == topics.control:
            raise Rejected(422, f"{field} {name!r} is the control topic of this stack", field=field)
        if name.startswith(namespace):
            raise Rejected(
                422, f"{field} {name!r} is in the {namespace}* namespace of this stack's own topics", field=field
            )
        if name.startswith("__"):
            raise Rejected(422, f"{field} {name!r} is one of the broker's internal topics", field=field)


def check_input_config(input_format: str, config: dict[str, Any]) -> None:
    """Refuses an input config that does not fit its format."""
    try:
        if input_format == "RAW":
            RawConfig.model_validate(config)
        elif input_format == "AVRO":
            AvroConfig.model_validate(config)
        elif input_format == "JSON":
            JsonConfig.model_validate(config)
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
        raise Rejected(422, f"input_config: {problem}", field="input_config") from None


async def pick_version(
    uow: UnitOfWork, result_id: int, wanted: int | Literal["latest"] | None, *, status: str
) -> ModelVersionRow:
    """The stored version an inference is to serve: ``wanted`` (a number), else the newest.
    Without its bytes (``ModelVersionRow.data`` is not loaded)."""
    if isinstance(wanted, int):
        # Beyond a PostgreSQL integer no version can exist (and the query could not be asked).
        row = await uow.versions.get(result_id, wanted, data=False) if wanted <= MAX_VERSION else None
        if row is None:
            have = [v.version for v in await uow.versions.of_result(result_id)]
            stored = f"its versions are {', '.join(map(str, have))}" if have else "it has no stored version yet"
            raise Rejected(422, f"result {result_id} has no version {wanted}: {stored}", field="model_version")
        return row
    row = await uow.versions.get(result_id, data=False)
    if row is None:
        raise Rejected(
            409,
            f"result {result_id} is {status} and has no stored model yet; try again once its training "
            "stored one (a bounded training's when it finishes, an incremental one's after a window)",
            field="result_id",
        )
    return row


def upper_input(summary: dict[str, Any]) -> dict[str, Any]:
    """What an upper model of a chain receives: the lower model's tensor as raw float32."""
    shapes = summary.get("input_shapes") or [[None]]
    dims = [str(d) for d in shapes[0][1:] if d is not None]
    return {"data_type": "float32", "data_reshape": " ".join(dims)}


async def deploy_inference(
    command: DeployInference, uow: UnitOfWork, *, topics: Topics = DEFAULT_TOPICS, jobs: JobDefaults = DEFAULTS
) -> list[Envelope]:
    params = command.payload
    check_topics(params, topics)
    result = await uow.training.result(params.result_id)
    if result is None:
        raise Rejected(422, f"result {params.result_id} does not exist", field="result_id")
    # Any stored version can be served, while an incremental training still makes more.
    version = await pick_version(uow, result.id, params.model_version, status=result.status)
    model = await uow.models.get(result.model_id)
    assert model is not None  # results keep their model (foreign key)
    is_upper = any(upper == model.id for upper in (await uow.models.upper_links()).values())

    input_format, input_config = params.input_format, params.input_config
    if input_format is None:
        if is_upper:  # fed by the model below it, through the upper topic
            input_format, input_config = "RAW", input_config or upper_input(model.summary)
        elif result.datasource:
            input_format = result.datasource["input_format"]
            input_config = input_config or result.datasource["input_config"]
        else:
            raise Rejected(
                422,
                "give input_format and input_config: the training stream announced none",
                field="input_format",
            )
    input_config = input_config or {}
    check_input_config(input_format, input_config)
    if (params.upper_topic is None) != (params.limit is None):
        raise Rejected(
            422,
            "a distributed sub-model needs both upper_topic and limit (or neither)",
            field="limit" if params.limit is None else "upper_topic",
        )

    job_id = uuid.uuid5(command.event_id, "inference")
    spec = ServeSpec(
        job_id=str(job_id),
        inference_id=0,  # the row's id, set once it exists
        result_id=result.id,
        framework=model.framework,
        code=model.code,
        imports=model.imports,
        artifact_sha256=version.sha256,
        artifact_format=version.format,
        model_version=version.version,
        follow_latest=params.model_version == "latest",
        input_topic=params.input_topic,
        output_topic=params.output_topic,
        input_format=input_format,
        input_config=input_config,
        upper_topic=params.upper_topic,
        limit=params.limit,
        replicas=params.replicas,
        gpus=params.gpus,
        group_id=f"kafkaml-inference-{job_id}",
    )
    jobs.check_fits(ServeModel(payload=spec))  # before anything is stored
    inference = await uow.inferences.add(
        Inference(
            result_id=result.id,
            model_id=model.id,
            replicas=params.replicas,
            input_topic=params.input_topic,
            output_topic=params.output_topic,
            input_format=input_format,
            input_config=input_config,
            upper_topic=params.upper_topic,
            confidence_limit=params.limit,
            gpus=params.gpus,
            visualization=params.visualization.model_dump(mode="json") if params.visualization else None,
            status="starting",
            job_id=job_id,
            spec={},
            model_version=version.version,
            follow_latest=params.model_version == "latest",
            command_id=command.event_id,
        )
    )
    key = jobs.signing_key(inference_signer(str(job_id), inference.id))
    spec = spec.model_copy(update={"inference_id": inference.id, "signing_key": key})
    inference.spec = spec.model_dump(mode="json")
    return [
        command.reply(InferenceCreated(payload=inference_record(inference))),
        command.reply(ServeModel(payload=spec)),
    ]


async def inference_status_changed(event: InferenceStatusChanged, uow: UnitOfWork) -> list[Envelope]:
    change = event.payload
    inference = await uow.inferences.get(change.inference_id, for_update=True)
    if inference is None or ORDER[change.status] <= ORDER[inference.status]:
        return []
    inference.status = change.status
    if change.error:
        inference.error = f"replica {change.replica}: {change.error}" if change.replica else change.error
    return []


async def stop_inference(command: StopInference, uow: UnitOfWork) -> list[Envelope]:
    inference_id = command.payload.inference_id
    inference = await uow.inferences.get(inference_id, for_update=True)
    if inference is None:
        raise Rejected(404, f"inference {inference_id} does not exist")
    if inference.status in ("stopped", "failed"):
        raise Rejected(409, f"inference {inference_id} is already {inference.status}")
    inference.status = "stopped"
    return [
        command.reply(InferenceStopped(payload=InferenceRef(inference_id=inference_id, job_id=str(inference.job_id))))
    ]


async def delete_inference(command: DeleteInference, uow: UnitOfWork) -> list[Envelope]:
    inference_id = command.payload.inference_id
    inference = await uow.inferences.get(inference_id, for_update=True)
    if inference is None:
        raise Rejected(404, f"inference {inference_id} does not exist")
    job_id = str(inference.job_id)
    await uow.inferences.delete(inference_id)
    return [command.reply(InferenceDeleted(payload=InferenceRef(inference_id=inference_id, job_id=job_id)))]
