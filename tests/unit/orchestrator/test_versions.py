"""Model versions in the orchestrator: incremental deployments, deploying a version, pinning,
following the latest, what replicas report; against an in-memory unit of work."""

from __future__ import annotations

import uuid
from typing import Any

from services.orchestrator.app import Orchestrator
from shared.events import CommandRejected, ConfigurationDefinition, CreateConfiguration
from shared.events.inference import InferenceCreated, ServeModel, ServeSpec
from shared.events.signing import Keyring, inference_signer
from shared.events.training import DeploymentCreated, IncrementalParams, TrainJob
from shared.events.versions import (
    InferenceVersionChanged,
    ModelVersion,
    ModelVersionSet,
    ModelVersionStored,
    SetModelVersion,
    SwitchModelVersion,
    VersionChange,
    VersionPolicy,
)
from tests.unit.fakes import FakeUnitOfWork
from tests.unit.orchestrator.test_handlers import create, definition
from tests.unit.orchestrator.test_inference import ROUTER, serve, trained
from tests.unit.orchestrator.test_training import configured, deploy

WINDOWS = {"window_samples": 100, "monitoring_metric": "accuracy"}


async def test_an_incremental_deployment_hands_its_settings_to_the_trainer() -> None:
    uow = FakeUnitOfWork()
    configuration, _ = await configured(uow, definition("a"))
    created, job = await deploy(uow, configuration, incremental=WINDOWS)
    assert isinstance(created, DeploymentCreated) and isinstance(job, TrainJob)
    assert job.payload.incremental == IncrementalParams(**WINDOWS)  # type: ignore[arg-type]
    assert created.payload.incremental is not None
    [row] = uow.deployments.rows.values()
    assert row.incremental is not None and row.incremental["window_samples"] == 100


async def test_an_incremental_distributed_chain_is_refused_naming_incremental() -> None:
    uow = FakeUnitOfWork()
    cloud = await create(uow, definition("cloud"))
    await create(uow, definition("edge", upper=cloud))
    [config] = await ROUTER(CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=[cloud])), uow)
    [refused] = await deploy(uow, config.payload.id, incremental=WINDOWS)  # type: ignore[attr-defined]
    assert isinstance(refused, CommandRejected)
    assert (refused.payload.status, refused.payload.field) == (422, "incremental")
    assert "not supported yet" in refused.payload.detail and not uow.deployments.rows


async def versions(uow: FakeUnitOfWork, *numbers: int) -> int:
    result = await trained(uow, finished=False, stored=False)
    for n in numbers:
        uow.versions.put(result, n, f"version {n}".encode(), fmt="pt")
    return result


async def test_a_deployed_inference_serves_the_newest_version_pinned_unless_told() -> None:
    uow = FakeUnitOfWork()
    result = await versions(uow, 1, 2, 3)
    created, spec = await serve(uow, result_id=result)
    assert isinstance(created, InferenceCreated) and isinstance(spec, ServeModel)
    assert (spec.payload.model_version, spec.payload.follow_latest) == (3, False)
    assert spec.payload.artifact_sha256 == uow.versions.rows[(result, 3)].sha256
    assert spec.payload.artifact_format == "pt" and created.payload.model_version == 3

    _, pinned = await serve(uow, result_id=result, model_version=2)
    assert pinned.payload.model_version == 2
    assert pinned.payload.artifact_sha256 == uow.versions.rows[(result, 2)].sha256

    latest, following = await serve(uow, result_id=result, model_version="latest")
    assert (following.payload.model_version, following.payload.follow_latest) == (3, True)
    assert latest.payload.model_version == "latest"

    [unknown] = await serve(uow, result_id=result, model_version=9)
    assert isinstance(unknown, CommandRejected)
    assert (unknown.payload.status, unknown.payload.field) == (422, "model_version")
    assert "its versions are 1, 2, 3" in unknown.payload.detail


async def deployed(uow: FakeUnitOfWork, result: int, **params: Any) -> tuple[int, ServeSpec]:
    created, spec = await serve(uow, result_id=result, **params)
    return created.payload.id, spec.payload


async def set_version(uow: FakeUnitOfWork, inference: int, wanted: int | str) -> list[Any]:
    policy = VersionPolicy(inference_id=inference, model_version=wanted)  # type: ignore[arg-type]
    return await ROUTER(SetModelVersion(payload=policy), uow)


async def test_set_model_version_pins_or_follows_and_switches_the_replicas() -> None:
    uow = FakeUnitOfWork()
    result = await versions(uow, 1, 2)
    inference, spec = await deployed(uow, result)
    done, switch = await set_version(uow, inference, 1)
    assert isinstance(done, ModelVersionSet) and done.payload.version == 1 and done.payload.model_version == 1
    assert isinstance(switch, SwitchModelVersion)
    assert switch.payload.model_dump() == {
        "inference_id": inference,
        "result_id": result,
        "version": 1,
        "sha256": uow.versions.rows[(result, 1)].sha256,
        "format": "pt",
        "job_id": spec.job_id,
    }
    row = uow.inferences.rows[inference]
    stored = ServeSpec.model_validate(row.spec)  # what a relaunch starts from
    assert (stored.model_version, stored.artifact_sha256) == (1, switch.payload.sha256)
    assert stored.signing_key == spec.signing_key

    done, switch = await set_version(uow, inference, "latest")
    assert done.payload.version == 2 and switch.payload.version == 2
    assert (row.model_version, row.follow_latest) == (2, True)


async def test_set_model_version_refuses_unknown_inferences_versions_and_stopped_ones() -> None:
    uow = FakeUnitOfWork()
    inference, _ = await deployed(uow, await versions(uow, 1))
    [missing] = await set_version(uow, 999, 1)
    assert isinstance(missing, CommandRejected) and missing.payload.status == 404
    [unknown] = await set_version(uow, inference, 5)
    assert isinstance(unknown, CommandRejected)
    assert (unknown.payload.status, unknown.payload.field) == (422, "model_version")
    uow.inferences.rows[inference].status = "stopped"
    [stopped] = await set_version(uow, inference, 1)
    assert isinstance(stopped, CommandRejected) and stopped.payload.status == 409


def stored_event(uow: FakeUnitOfWork, result: int, version: int) -> ModelVersionStored:
    row = uow.versions.put(result, version, f"version {version}".encode(), fmt="pt")
    return ModelVersionStored(
        payload=ModelVersion(result_id=result, version=version, sha256=row.sha256, size=row.size, format="pt")
    )


async def test_a_new_version_switches_the_running_inferences_that_follow_the_latest_only() -> None:
    uow = FakeUnitOfWork()
    result = await versions(uow, 1)
    following, _ = await deployed(uow, result, model_version="latest")
    pinned, _ = await deployed(uow, result, model_version=1)
    stopped, _ = await deployed(uow, result, model_version="latest")
    uow.inferences.rows[stopped].status = "stopped"
    [switch] = await ROUTER(stored_event(uow, result, 2), uow)
    assert isinstance(switch, SwitchModelVersion)
    assert (switch.payload.inference_id, switch.payload.version) == (following, 2)
    assert ServeSpec.model_validate(uow.inferences.rows[following].spec).model_version == 2
    assert uow.inferences.rows[pinned].model_version == 1
    # A late announcement of an older version switches nothing back.
    late = ModelVersionStored(payload=stored_event(uow, result, 1).payload)
    assert await ROUTER(late, uow) == []


async def test_replicas_reports_set_the_serving_version() -> None:
    uow = FakeUnitOfWork()
    inference, _ = await deployed(uow, await versions(uow, 1, 2))
    change = VersionChange(inference_id=inference, replica="0", version=2)
    assert await ROUTER(InferenceVersionChanged(payload=change), uow) == []
    assert uow.inferences.rows[inference].serving_version == 2
    gone = VersionChange(inference_id=999, replica="0", version=2)
    assert await ROUTER(InferenceVersionChanged(payload=gone), uow) == []


def test_a_switch_is_signed_with_its_inference_key() -> None:
    keys = Keyring(["a bus key"])
    orchestrator = Orchestrator.__new__(Orchestrator)  # signer_for needs the keyring only
    orchestrator.keyring = keys
    job_id = str(uuid.uuid4())
    switch = SwitchModelVersion.model_validate(
        {
            "payload": {
                "inference_id": 4,
                "result_id": 1,
                "version": 2,
                "sha256": "0" * 64,
                "format": "pt",
                "job_id": job_id,
            }
        }
    )
    signer = orchestrator.signer_for(switch)
    assert signer == keys.key(inference_signer(job_id, 4))
    assert orchestrator.signer_for(ModelVersionSet(payload=VersionPolicy(inference_id=4, model_version=1))) is None
