"""Catalog handlers: models and configurations.

Each takes the message and a unit of work and returns the messages to
publish once the transaction has committed. A handler refuses by raising
``Rejected`` before it changes anything; the router answers the command.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.db.records import configuration_record, model_record
from shared.db.tables import Configuration, Model
from shared.db.uow import UnitOfWork
from shared.errors import Rejected
from shared.events import (
    ConfigurationCreated,
    ConfigurationDeleted,
    CreateConfiguration,
    CreateModel,
    DeleteConfiguration,
    DeleteModel,
    Envelope,
    ModelCreated,
    ModelDefinition,
    ModelDeleted,
    ModelValidated,
    ModelValidationFailed,
    ValidateModel,
)
from shared.events.validation import ValidateModelPayload

# --- models ----------------------------------------------------------------


async def check_upper_model(definition: ModelDefinition, uow: UnitOfWork, *, answering: str | None = None) -> None:
    """Refuses a model that cannot sit below its upper model (``answering``: the command an event answers)."""
    if definition.upper_model_id is None:
        return
    upper = await uow.models.get(definition.upper_model_id)
    if upper is None:
        problem = f"upper model {definition.upper_model_id} does not exist"
    elif upper.framework != definition.framework:
        problem = f"upper model {upper.id} is a {upper.framework} model; a chain uses one framework"
    else:
        return
    raise Rejected(422, problem, field="upper_model_id", command_type=answering)


async def create_model(command: CreateModel, uow: UnitOfWork, *, answer_within_s: float = 120.0) -> list[Envelope]:
    """Checks what the catalog can check, then asks the validator to build the code; without
    an answer within ``answer_within_s`` the command ends rejected (the orchestrator's reaper)."""
    if await uow.models.by_command(command.event_id) is not None:
        return []  # already created by an earlier delivery
    await check_upper_model(command.payload, uow)
    await uow.outcomes.expect(command.event_id, "CreateModel", "validator", answer_within_s)
    return [command.reply(ValidateModel(payload=ValidateModelPayload(model=command.payload)))]


async def model_validated(event: ModelValidated, uow: UnitOfWork) -> list[Envelope]:
    """The code built a model: add it to the catalog (once per command)."""
    command_id = event.correlation_id
    if command_id is None:
        raise ValueError("ModelValidated without correlation_id: cannot tell which command it answers")
    existing = await uow.models.by_command(command_id)
    if existing is not None:
        return [event.reply(ModelCreated(payload=model_record(existing)))]
    if await uow.outcomes.get(command_id) is not None:
        return []  # the command already ended (no answer came in time): a late answer changes nothing
    definition = event.payload.model
    # The upper model may have gone while the code was being validated.
    await check_upper_model(definition, uow, answering="CreateModel")
    model = await uow.models.add(
        Model(
            name=definition.name,
            framework=definition.framework,
            code=definition.code,
            imports=definition.imports,
            description=definition.description,
            upper_model_id=definition.upper_model_id,
            summary=event.payload.summary.model_dump(mode="json"),
            command_id=command_id,
        )
    )
    return [event.reply(ModelCreated(payload=model_record(model)))]


async def model_validation_failed(event: ModelValidationFailed, uow: UnitOfWork) -> list[Envelope]:
    failure = event.payload
    if event.correlation_id is not None and await uow.outcomes.get(event.correlation_id) is not None:
        return []  # the command already ended
    raise Rejected(422, failure.error, field=failure.field, line=failure.line, command_type="CreateModel")


async def delete_model(command: DeleteModel, uow: UnitOfWork) -> list[Envelope]:
    model_id = command.payload.model_id
    if await uow.models.get(model_id) is None:
        raise Rejected(404, f"model {model_id} does not exist")
    configurations = await uow.models.configurations_using(model_id)
    if configurations:
        raise Rejected(
            409,
            f"model {model_id} is used by configuration(s) {', '.join(map(str, configurations))}; delete those first",
        )
    lower = sorted(m for m, upper in (await uow.models.upper_links()).items() if upper == model_id)
    if lower:
        raise Rejected(
            409,
            f"model {model_id} is the upper model of model(s) {', '.join(map(str, lower))}; delete those first",
        )
    await uow.models.delete(model_id)
    return [command.reply(ModelDeleted(payload=command.payload))]


# --- configurations --------------------------------------------------------


def expand_chains(selected: Iterable[int], upper_links: dict[int, int | None]) -> list[int]:
    """The selected models plus, for each, every model below it in its distributed chain."""
    below: dict[int, list[int]] = {}
    for model_id, upper in upper_links.items():
        if upper is not None:
            below.setdefault(upper, []).append(model_id)
    result: set[int] = set()
    pending = list(selected)
    while pending:
        current = pending.pop()
        if current not in result:
            result.add(current)
            pending.extend(below.get(current, []))
    return sorted(result)


async def create_configuration(command: CreateConfiguration, uow: UnitOfWork) -> list[Envelope]:
    existing = await uow.configurations.by_command(command.event_id)
    if existing is not None:
        ids = (await uow.configurations.model_ids([existing.id]))[existing.id]
        return [command.reply(ConfigurationCreated(payload=configuration_record(existing, ids)))]
    links = await uow.models.upper_links()
    missing = sorted({m for m in command.payload.model_ids if m not in links})
    if missing:
        raise Rejected(
            422,
            f"model(s) {', '.join(map(str, missing))} do not exist",
            field="model_ids",
        )
    not_top = sorted({m for m in command.payload.model_ids if links[m] is not None})
    if not_top:
        raise Rejected(
            422,
            f"model(s) {', '.join(map(str, not_top))} sit below an upper model in a distributed chain; "
            "choose the top model of the chain, it brings the whole chain",
            field="model_ids",
        )
    model_ids = expand_chains(command.payload.model_ids, links)
    configuration = await uow.configurations.add(
        Configuration(name=command.payload.name, description=command.payload.description, command_id=command.event_id),
        model_ids,
    )
    return [command.reply(ConfigurationCreated(payload=configuration_record(configuration, model_ids)))]


async def delete_configuration(command: DeleteConfiguration, uow: UnitOfWork) -> list[Envelope]:
    configuration_id = command.payload.configuration_id
    if await uow.configurations.get(configuration_id) is None:
        raise Rejected(404, f"configuration {configuration_id} does not exist")
    deployments = await uow.configurations.deployments_using(configuration_id)
    if deployments:
        raise Rejected(
            409,
            f"configuration {configuration_id} is used by deployment(s) {', '.join(map(str, deployments))}",
        )
    await uow.configurations.delete(configuration_id)
    return [command.reply(ConfigurationDeleted(payload=command.payload))]
