"""Model versions of inferences: pin or unpin one (``SetModelVersion``), follow a result's newest
version (``ModelVersionStored``), record what replicas serve (``InferenceVersionChanged``).

A switch is answered as ``SwitchModelVersion``: the runtime (``app.py``) publishes the version's
chunks on the artifacts topic again, then the switch on the jobs topic, signed with the
inference's own key, the only one its replicas obey. The inference's stored spec is updated in
the same transaction, so replicas relaunched later start on the version it names.
"""

from __future__ import annotations

from typing import Literal

from services.orchestrator.inference import pick_version
from shared.db.tables import Inference, ModelVersionRow
from shared.db.uow import UnitOfWork
from shared.errors import Rejected
from shared.events import Envelope
from shared.events.inference import ServeSpec
from shared.events.versions import (
    InferenceVersionChanged,
    ModelVersionSet,
    ModelVersionStored,
    SetModelVersion,
    SwitchModelVersion,
    VersionPolicy,
    VersionSwitch,
)


def switch_to(inference: Inference, version: ModelVersionRow, *, follow_latest: bool) -> SwitchModelVersion:
    """Moves the inference's row and stored spec to ``version``; the switch its replicas get."""
    inference.model_version = version.version
    inference.follow_latest = follow_latest
    spec = ServeSpec.model_validate(inference.spec).model_copy(
        update={
            "model_version": version.version,
            "follow_latest": follow_latest,
            "artifact_sha256": version.sha256,
            "artifact_format": version.format,
        }
    )
    inference.spec = spec.model_dump(mode="json")
    return SwitchModelVersion(
        payload=VersionSwitch(
            inference_id=inference.id,
            result_id=inference.result_id,
            version=version.version,
            sha256=version.sha256,
            format=version.format,
            job_id=str(inference.job_id),
        )
    )


async def set_model_version(command: SetModelVersion, uow: UnitOfWork) -> list[Envelope]:
    """Promotes, rolls back, or makes the inference follow the newest version again."""
    policy = command.payload
    inference = await uow.inferences.get(policy.inference_id, for_update=True)
    if inference is None:
        raise Rejected(404, f"inference {policy.inference_id} does not exist")
    if inference.status in ("stopped", "failed"):
        raise Rejected(409, f"inference {inference.id} is {inference.status}: deploy it again to serve another version")
    result = await uow.training.result(inference.result_id)
    status = result.status if result is not None else "gone"
    wanted: int | Literal["latest"] = policy.model_version
    version = await pick_version(uow, inference.result_id, None if wanted == "latest" else wanted, status=status)
    switch = switch_to(inference, version, follow_latest=wanted == "latest")
    answer = VersionPolicy(inference_id=inference.id, model_version=wanted, version=version.version)
    return [command.reply(ModelVersionSet(payload=answer)), command.reply(switch)]


async def model_version_stored(event: ModelVersionStored, uow: UnitOfWork) -> list[Envelope]:
    """A new version: every running inference of its result that follows the latest switches to it."""
    stored = event.payload
    answers: list[Envelope] = []
    for inference in await uow.inferences.following(stored.result_id):
        spec = inference.spec
        newer = stored.version > int(spec.get("model_version", 1))
        # The same version stored again from a newer attempt (other bytes) is switched to as well.
        redone = stored.version == spec.get("model_version") and stored.sha256 != spec.get("artifact_sha256")
        if not (newer or redone):
            continue  # older than what it serves (a redelivered or late announcement)
        version = await uow.versions.get(stored.result_id, stored.version, data=False)
        if version is not None:
            answers.append(switch_to(inference, version, follow_latest=True))
    return answers


async def inference_version_changed(event: InferenceVersionChanged, uow: UnitOfWork) -> list[Envelope]:
    """What the replicas serve now (the last report wins)."""
    change = event.payload
    inference = await uow.inferences.get(change.inference_id, for_update=True)
    if inference is not None:
        inference.serving_version = change.version
    return []
