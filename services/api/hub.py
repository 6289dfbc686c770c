"""The update hub: every domain event, as "this entity changed", for the open pages.

One feed (services/api/live.py) reads the events topic for the whole API process, however
many pages are open; each page gets the updates its filters ask for through its own bounded
buffer and re-fetches the REST resource an update names (or uses its ``detail`` directly,
e.g. an epoch's metrics). The mapping below says which entity each event class is about:
an event class on the events topic that is missing from both tables fails a unit test, so a
new event cannot be forgotten silently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from shared import events
from shared.errors import Undecodable
from shared.events import Envelope

Entity = Literal["model", "configuration", "deployment", "result", "datasource", "inference"]
ENTITIES: tuple[str, ...] = get_args(Entity)

# Per page: far more than a page shows between two reads; a page that lags further loses the oldest.
CLIENT_UPDATES = 1000
# A payload larger than this travels without its detail (a model's code may be a megabyte): the
# page re-fetches the resource instead.
DETAIL_MAX_BYTES = 16 * 1024

# Each event class: the entity it is about and the payload field holding that entity's id.
ABOUT: dict[type[Envelope], tuple[Entity, str]] = {
    events.ModelCreated: ("model", "id"),
    events.ModelDeleted: ("model", "model_id"),
    events.ConfigurationCreated: ("configuration", "id"),
    events.ConfigurationDeleted: ("configuration", "configuration_id"),
    events.DeploymentCreated: ("deployment", "id"),
    events.DatasourceRecorded: ("datasource", "id"),
    events.DatasourceSent: ("datasource", "datasource_id"),
    events.InferenceCreated: ("inference", "id"),
    events.InferenceStopped: ("inference", "inference_id"),
    events.InferenceDeleted: ("inference", "inference_id"),
    events.InferenceStatusChanged: ("inference", "inference_id"),
    events.InferenceStats: ("inference", "inference_id"),
    events.TrainingStopped: ("result", "result_id"),
    events.TrainingStatusChanged: ("result", "result_id"),
    events.TrainingProgress: ("result", "result_id"),
    events.EpochCompleted: ("result", "result_id"),
    events.TrainingFinished: ("result", "result_id"),
    events.TrainingFailed: ("result", "result_id"),
    events.ResultStored: ("result", "result_id"),
    events.ArtifactRejected: ("result", "result_id"),
    events.WindowCompleted: ("result", "result_id"),
    events.ModelVersionPublished: ("result", "result_id"),
    events.ModelVersionStored: ("result", "result_id"),
    events.ModelVersionSet: ("inference", "inference_id"),
    events.InferenceVersionChanged: ("inference", "inference_id"),
}
# Events about no stored entity: a model's validation comes before the model exists, and a
# refused command changed nothing (its caller hears of it through its own REST answer).
NOT_ABOUT_AN_ENTITY: frozenset[type[Envelope]] = frozenset(
    {events.ModelValidated, events.ModelValidationFailed, events.CommandRejected}
)
_BY_NAME = {cls.__name__: about for cls, about in ABOUT.items()}


@dataclass(frozen=True)
class Update:
    entity: str
    id: int
    kind: str
    at: float
    detail: dict[str, Any]

    def sse(self) -> str:
        """The update as one server-sent event."""
        data = {"entity": self.entity, "id": self.id, "kind": self.kind, "at": self.at, "detail": self.detail}
        return f"event: {self.entity}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def update_of(message: Envelope) -> Update | None:
    about = _BY_NAME.get(message.type)
    if about is None:
        return None
    entity, field = about
    entity_id = getattr(message.payload, field, None)
    if not isinstance(entity_id, int):
        return None
    detail = message.payload.model_dump(mode="json")
    if len(json.dumps(detail)) > DETAIL_MAX_BYTES:
        detail = {}
    return Update(entity, entity_id, message.type, message.occurred_at.timestamp(), detail)


def decode_update(raw: bytes | None) -> list[Update]:
    """A record of the events topic → its update (none for what is not about an entity).

    The hub only watches: a record it cannot read is the consumers' to dead-letter, not its own.
    """
    try:
        update = update_of(events.decode(raw))
    except Undecodable:
        return []
    return [update] if update is not None else []


@dataclass(frozen=True)
class Filters:
    """What a page asks for: updates about any of ``entities`` (all when empty) whose id is any
    of ``ids`` (all when empty)."""

    entities: frozenset[str] = frozenset()
    ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, entities: Sequence[str], ids: Sequence[int]) -> Filters:
        return cls(frozenset(entities), frozenset(ids))

    def wants(self, update: Update) -> bool:
        return (not self.entities or update.entity in self.entities) and (not self.ids or update.id in self.ids)
