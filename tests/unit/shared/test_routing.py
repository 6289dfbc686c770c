"""The router: handlers by message class, one per command, refusals answered in one place."""

from __future__ import annotations

import pytest

from shared.errors import Rejected
from shared.events import (
    CommandRejected,
    DeleteModel,
    DeleteModelPayload,
    Envelope,
    ModelDefinition,
    ModelDeleted,
    ModelValidationFailed,
)
from shared.events.validation import ValidationError
from shared.routing import Router


async def delete(command: DeleteModel, uow: list[str]) -> list[Envelope]:
    if command.payload.model_id == 0:
        raise Rejected(404, "model 0 does not exist", field="model_id")
    uow.append("deleted")
    return [command.reply(ModelDeleted(payload=command.payload))]


async def note(event: ModelValidationFailed, uow: list[str]) -> list[Envelope]:
    uow.append(f"noted {event.payload.error}")
    return []


async def refuse(event: ModelValidationFailed, uow: list[str]) -> list[Envelope]:
    raise Rejected(422, event.payload.error, field="code", line=3, command_type="CreateModel")


def failure() -> ModelValidationFailed:
    model = ModelDefinition(name="m", framework="pytorch", code="model = (")
    return ModelValidationFailed(payload=ValidationError(model=model, error="unclosed bracket"))


async def test_a_refused_command_is_answered_with_its_problem() -> None:
    router: Router[list[str]] = Router()
    router.command(DeleteModel, delete)
    command = DeleteModel(payload=DeleteModelPayload(model_id=0))
    [answer] = await router(command, [])
    assert isinstance(answer, CommandRejected) and answer.correlation_id == command.event_id
    assert (answer.payload.command_type, answer.payload.status, answer.payload.title) == (
        "DeleteModel",
        404,
        "Not found",
    )
    assert answer.payload.field == "model_id"


def test_a_command_has_exactly_one_handler() -> None:
    router: Router[list[str]] = Router()
    router.command(DeleteModel, delete)
    with pytest.raises(ValueError, match="exactly one"):
        router.command(DeleteModel, delete)


async def test_an_event_runs_every_handler_and_may_answer_the_command_it_follows() -> None:
    router: Router[list[str]] = Router()
    router.event(ModelValidationFailed, note)
    router.event(ModelValidationFailed, refuse)
    effects: list[str] = []
    [answer] = await router(failure(), effects)
    assert effects == ["noted unclosed bracket"]
    assert isinstance(answer, CommandRejected)
    assert (answer.payload.command_type, answer.payload.line) == ("CreateModel", 3)


async def test_an_event_refused_with_no_command_to_answer_propagates_for_the_dead_letter_topic() -> None:
    async def cannot_store(event: ModelValidationFailed, uow: list[str]) -> list[Envelope]:
        raise Rejected(422, "result 9 does not exist", field="result_id")

    router: Router[list[str]] = Router()
    router.event(ModelValidationFailed, cannot_store)
    with pytest.raises(Rejected, match="result 9"):
        await router(failure(), [])


async def test_messages_nobody_registered_are_not_handled() -> None:
    router: Router[list[str]] = Router()
    router.command(DeleteModel, delete)
    assert not router.handles(failure())
    assert await router(failure(), []) == []
