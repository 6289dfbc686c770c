"""Orchestrator handlers against an in-memory unit of work."""

from __future__ import annotations

from services.orchestrator.catalog import expand_chains
from services.orchestrator.handlers import make_router
from shared.events import (
    CommandRejected,
    ConfigurationCreated,
    ConfigurationDefinition,
    CreateConfiguration,
    CreateModel,
    DeleteModel,
    ModelCreated,
    ModelDefinition,
    ModelDeleted,
    ModelSummary,
    ModelValidated,
    ModelValidationFailed,
    ValidateModel,
)
from shared.events.catalog import DeleteModelPayload
from shared.events.validation import ValidationError, ValidationPassed
from shared.handling import handle_once
from tests.unit.fakes import FakeUnitOfWork

ROUTER = make_router()

SUMMARY = ModelSummary(
    layers=[], parameters=10, trainable_parameters=10, input_shapes=[[None, 2]], output_shapes=[[None, 1]]
)


def definition(name: str = "m", upper: int | None = None, framework: str = "tensorflow") -> ModelDefinition:
    return ModelDefinition(name=name, framework=framework, code="model = ...", upper_model_id=upper)  # type: ignore[arg-type]


async def create(uow: FakeUnitOfWork, d: ModelDefinition) -> int:
    """Walks CreateModel → ValidateModel → ModelValidated → ModelCreated; returns the model id."""
    command = CreateModel(payload=d)
    [validate] = await ROUTER(command, uow)
    assert isinstance(validate, ValidateModel) and validate.correlation_id == command.event_id
    validated = validate.reply(ModelValidated(payload=ValidationPassed(model=d, summary=SUMMARY)))
    [created] = await ROUTER(validated, uow)
    assert isinstance(created, ModelCreated) and created.correlation_id == command.event_id
    return created.payload.id


async def test_model_is_created_once_per_command_even_when_validated_twice() -> None:
    uow = FakeUnitOfWork()
    command = CreateModel(payload=definition())
    [validate] = await ROUTER(command, uow)
    first = validate.reply(ModelValidated(payload=ValidationPassed(model=command.payload, summary=SUMMARY)))
    second = validate.reply(ModelValidated(payload=ValidationPassed(model=command.payload, summary=SUMMARY)))
    [a] = await ROUTER(first, uow)
    [b] = await ROUTER(second, uow)
    assert len(uow.models.rows) == 1
    assert isinstance(a, ModelCreated) and isinstance(b, ModelCreated) and a.payload.id == b.payload.id


async def test_validation_failure_is_rejected_with_line_and_field() -> None:
    uow = FakeUnitOfWork()
    command = CreateModel(payload=definition())
    failure = command.reply(
        ModelValidationFailed(payload=ValidationError(model=command.payload, error="SyntaxError", line=3))
    )
    [rejected] = await ROUTER(failure, uow)
    assert isinstance(rejected, CommandRejected)
    assert (rejected.payload.status, rejected.payload.field, rejected.payload.line) == (422, "code", 3)
    assert rejected.correlation_id == command.event_id
    assert not uow.models.rows


async def test_upper_model_must_exist_and_share_the_framework() -> None:
    uow = FakeUnitOfWork()
    [missing] = await ROUTER(CreateModel(payload=definition(upper=42)), uow)
    assert isinstance(missing, CommandRejected) and missing.payload.field == "upper_model_id"
    cloud = await create(uow, definition("cloud"))
    [mixed] = await ROUTER(CreateModel(payload=definition("edge", upper=cloud, framework="pytorch")), uow)
    assert isinstance(mixed, CommandRejected) and "framework" in mixed.payload.detail


async def test_configuration_of_the_top_model_brings_its_chain() -> None:
    uow = FakeUnitOfWork()
    cloud = await create(uow, definition("cloud"))
    fog = await create(uow, definition("fog", upper=cloud))
    edge = await create(uow, definition("edge", upper=fog))
    alone = await create(uow, definition("alone"))
    command = CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=[cloud, alone]))
    [created] = await ROUTER(command, uow)
    assert isinstance(created, ConfigurationCreated)
    assert created.payload.model_ids == sorted([cloud, fog, edge, alone])


async def test_configuration_refuses_a_model_inside_a_chain_and_unknown_models() -> None:
    uow = FakeUnitOfWork()
    cloud = await create(uow, definition("cloud"))
    edge = await create(uow, definition("edge", upper=cloud))
    for ids, words in (([edge], "top model"), ([cloud, 999], "999")):
        command = CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=ids))
        [rejected] = await ROUTER(command, uow)
        assert isinstance(rejected, CommandRejected)
        assert (
            rejected.payload.status == 422
            and rejected.payload.field == "model_ids"
            and words in rejected.payload.detail
        )


async def test_delete_model_conflicts_while_used_and_works_after() -> None:
    uow = FakeUnitOfWork()
    model = await create(uow, definition())
    configure = CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=[model]))
    [configured] = await ROUTER(configure, uow)
    delete = DeleteModel(payload=DeleteModelPayload(model_id=model))
    [conflict] = await ROUTER(delete, uow)
    assert isinstance(conflict, CommandRejected) and conflict.payload.status == 409
    await uow.configurations.delete(configured.payload.id)  # type: ignore[attr-defined]
    [deleted] = await ROUTER(DeleteModel(payload=delete.payload), uow)
    assert isinstance(deleted, ModelDeleted) and model not in uow.models.rows
    [gone] = await ROUTER(DeleteModel(payload=delete.payload), uow)
    assert isinstance(gone, CommandRejected) and gone.payload.status == 404


async def test_delete_model_conflicts_while_a_lower_model_points_to_it() -> None:
    uow = FakeUnitOfWork()
    cloud = await create(uow, definition("cloud"))
    await create(uow, definition("edge", upper=cloud))
    [conflict] = await ROUTER(DeleteModel(payload=DeleteModelPayload(model_id=cloud)), uow)
    assert (
        isinstance(conflict, CommandRejected)
        and conflict.payload.status == 409
        and "upper model" in conflict.payload.detail
    )


async def test_handle_once_replays_the_stored_answer_for_a_redelivered_message() -> None:
    uow = FakeUnitOfWork()
    command = CreateConfiguration(payload=ConfigurationDefinition(name="c", model_ids=[1]))
    first = await handle_once(command, ROUTER, uow=uow, consumer="t")
    again = await handle_once(command, ROUTER, uow=uow, consumer="t")
    assert len(uow.processed.rows) == 1 and len(uow.configurations.rows) == 0  # rejected: model 1 is unknown
    assert [m.event_id for m in again] == [m.event_id for m in first]
    assert command.event_id in uow.outcomes.rows  # a 202 client can find how it ended


def test_expand_chains() -> None:
    links = {1: None, 2: 1, 3: 2, 4: None, 5: 4}
    assert expand_chains([1], links) == [1, 2, 3]
    assert expand_chains([4, 1], links) == [1, 2, 3, 4, 5]
    assert expand_chains([3], links) == [3]


async def test_a_model_waits_for_its_validation_and_a_late_answer_after_the_command_ended_changes_nothing() -> None:
    uow = FakeUnitOfWork()
    command = CreateModel(payload=definition())
    [validate] = await ROUTER(command, uow)
    assert uow.outcomes.pending[command.event_id].awaiting == "validator"
    # The reaper ended the command (no answer in time); then the answer arrives.
    await uow.outcomes.record(command.event_id, "CommandRejected", {})
    assert command.event_id not in uow.outcomes.pending
    late = validate.reply(ModelValidated(payload=ValidationPassed(model=command.payload, summary=SUMMARY)))
    assert await ROUTER(late, uow) == []
    assert not uow.models.rows
