"""The trainer's validator role: builds users' model code in a sandbox and answers.

    KAFKAML_BOOTSTRAP_SERVERS=… python -m services.trainer.validator

It has no database credentials: the model definition arrives in the
command, the summary or the error leaves as an event.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import MessageSizeTooLargeError

from services.trainer.sandbox import ModelCodeError, Sandbox, SandboxError
from shared.alive import AliveFile
from shared.confine import Confinement, Limits
from shared.errors import TooLarge
from shared.events import Envelope, ModelValidated, ModelValidationFailed, ValidateModel, decode
from shared.events.validation import ValidationError, ValidationPassed
from shared.kafka import Producer, Received, consume, ensure_topics, make_consumer
from shared.process import on_stop_signals, setup_logging
from shared.settings import Settings, get_settings
from shared.topics import topics_for

log = logging.getLogger("kafkaml.validator")


async def validate(command: ValidateModel, sandbox: Sandbox) -> Envelope:
    """The answer to one validation command."""
    definition = command.payload.model
    try:
        summary = await sandbox.validate(definition)
    except ModelCodeError as error:
        log.info("model %r rejected: %s", definition.name, error.detail)
        failure = ValidationError(model=definition, error=error.detail, field=error.field, line=error.line)
        return command.reply(ModelValidationFailed(payload=failure))
    except SandboxError as error:
        # Not the user's fault, but an answer beats a request left waiting.
        log.error("sandbox failure while validating %r: %s", definition.name, error)
        failure = ValidationError(model=definition, error=f"the validator could not run the code: {error}; try again")
        return command.reply(ModelValidationFailed(payload=failure))
    log.info("model %r validated: %d parameters", definition.name, summary.parameters)
    return command.reply(ModelValidated(payload=ValidationPassed(model=definition, summary=summary)))


async def answer(command: ValidateModel, sandbox: Sandbox, producer: Producer) -> None:
    """Validates and publishes the answer; an answer too large for a Kafka message (a model of
    very many layers) becomes a failure that says so, so the command still ends."""
    reply = await validate(command, sandbox)
    try:
        await producer.publish(reply)
    except (TooLarge, MessageSizeTooLargeError):  # refused by our producer, or by the broker
        size = len(reply.to_bytes())
        error = (
            f"the model's summary is too large to send ({size:,} bytes, more than a Kafka message may hold): "
            "a model with fewer layers, or layers grouped into blocks, can be validated"
        )
        log.warning("model %r: %s", command.payload.model.name, error)
        failure = ValidationError(model=command.payload.model, error=error)
        await producer.publish(command.reply(ModelValidationFailed(payload=failure)))


def confinement_for(settings: Settings) -> Confinement:
    """What each validation job gets (docs/security.md): no network, the limits, maybe a uid."""
    uid = settings.validation_uid
    gid = settings.validation_gid if settings.validation_gid is not None else uid
    limits = Limits(
        processes=settings.validation_processes,
        address_space_mb=settings.validation_address_space_mb,
        file_size_mb=settings.validation_file_size_mb,
        open_files=settings.validation_open_files,
        cpu_s=settings.validation_cpu_s,
    )
    return Confinement(
        limits=limits,
        run_as=None if uid is None or gid is None else (uid, gid),
        network=False,
        # The stack's state folder holds its token and database URL: model code sees it empty.
        hidden=(str(settings.home.resolve()),),
    )


async def run(settings: Settings, stop: asyncio.Event) -> None:
    topics = topics_for(settings)
    await ensure_topics(settings)
    sandbox = Sandbox(
        timeout_s=settings.validation_timeout_s,
        memory_mb=settings.validation_memory_mb,
        confinement=confinement_for(settings),
        work_root=None if settings.validation_work_dir is None else str(settings.validation_work_dir),
    )
    await sandbox.start()
    # Validation takes a second or more: a 100 ms fetch wait costs nothing and spares the CPU.
    consumer = make_consumer(
        settings, topics.validation, group_id=f"{settings.topic_prefix}-validator", fetch_max_wait_ms=100
    )
    async with Producer(settings) as producer:

        async def on_record(received: Received) -> None:
            message = decode(received.value)
            if not isinstance(message, ValidateModel):
                raise ValueError(f"the validation topic takes ValidateModel, not {message.type}")
            await answer(message, sandbox, producer)

        await consumer.start()
        log.info("validator ready: consuming %s", topics.validation)
        try:
            await consume(
                consumer,
                on_record,
                producer=producer,
                dead_letter_topic=topics.dead_letters,
                name="validator",
                stop=stop,
                alive=AliveFile.from_env(),
            )
        finally:
            await consumer.stop()
            await sandbox.close()


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)

    async def serve() -> None:
        stop = asyncio.Event()
        on_stop_signals(lambda _signum: stop.set())
        await run(settings, stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
