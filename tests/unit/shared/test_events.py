"""The message contract: decoding, errors, and the exported JSON Schema kept current."""

from __future__ import annotations

import json

import pytest

from shared.errors import Undecodable
from shared.events import CreateModel, ModelCreated, ModelDefinition, ValidateModel, decode
from shared.events.inference import ServeModel
from shared.events.schemas import SCHEMA_DIR, render
from shared.events.training import JobModel, JobSpec, TrainJob
from shared.topics import Topics


def test_roundtrip_keeps_type_and_ids() -> None:
    command = CreateModel(payload=ModelDefinition(name="m", framework="pytorch", code="model = 1"))
    decoded = decode(command.to_bytes())
    assert isinstance(decoded, CreateModel)
    assert decoded.event_id == command.event_id and decoded.payload == command.payload


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = json.loads(CreateModel(payload=ModelDefinition(name="m", framework="pytorch", code="x")).to_bytes())
    raw["future_field"] = 1
    raw["payload"]["another"] = "x"
    assert isinstance(decode(json.dumps(raw).encode()), CreateModel)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json", "not a Kafka-ML message"),
        (b'{"type": "Nope", "payload": {}}', "type"),
        (b'{"type": "CreateModel", "payload": {"name": "m"}}', "CreateModel.payload.framework: Field required"),
        (None, "empty"),
    ],
)
def test_undecodable_messages_say_why(raw: bytes | None, words: str) -> None:
    with pytest.raises(Undecodable) as error:
        decode(raw)
    assert words in error.value.detail


def test_exported_schema_is_current() -> None:
    """Run `make schemas` when this fails: the files are the public contract."""
    for name, text in render().items():
        assert (SCHEMA_DIR / name).read_text() == text, f"{name} is stale: run `make schemas`"


def test_messages_are_routed_by_kind() -> None:
    topics = Topics(prefix="p", control="ctl")
    assert topics.of(CreateModel) == "p.commands"
    assert topics.of(ValidateModel) == "p.validation"
    assert topics.of(ModelCreated) == "p.events"


JOB = JobSpec(
    job_id="job-1",
    deployment_id=1,
    framework="tensorflow",
    models=[JobModel(result_id=1, model_id=1, name="m", code="model = 1")],
    batch_size=32,
    fit={},
    evaluate={},
    confusion_matrix=False,
)


def test_what_workers_need_outlives_the_brokers_retention() -> None:
    """A restarted trainer or replica must still find its spec and its model on Apache Kafka,
    whose default retention is seven days."""
    specs = {spec.name: spec for spec in Topics(prefix="p", control="ctl").specs()}
    assert specs["p.jobs"].config == {"cleanup.policy": "compact"}, "specs are keyed by job id: compact them"
    assert specs["p.artifacts"].config == {"retention.ms": "-1"}, "chunks share a key: keep them instead"
    week = str(7 * 24 * 3600 * 1000)
    assert all(specs[f"p.{name}"].config == {"retention.ms": week} for name in ("commands", "events", "dead-letters"))
    assert TrainJob(payload=JOB).key() == JOB.job_id.encode() and ServeModel.topic == TrainJob.topic == "jobs"
