"""The validator's answer always leaves: one too large for a Kafka message becomes a failure."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from services.trainer.validator import answer
from shared.events import Envelope, ModelDefinition, ModelSummary, ModelValidated, ModelValidationFailed, ValidateModel
from shared.events.validation import ValidateModelPayload


class RefusesLargeMessages:
    """Stands in for the producer: refuses what is larger than ``limit`` bytes, as the client does."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[Envelope] = []

    async def publish(self, message: Envelope) -> None:
        if len(message.to_bytes()) > self.limit:
            raise MessageSizeTooLargeError()
        self.sent.append(message)


class BuildsASummary:
    def __init__(self, layers: int) -> None:
        self.layers = layers

    async def validate(self, definition: ModelDefinition) -> ModelSummary:
        layers: list[dict[str, Any]] = [{"name": f"layer_{i}", "type": "Dense"} for i in range(self.layers)]
        return ModelSummary.model_validate(
            {"layers": layers, "parameters": 1, "trainable_parameters": 1, "input_shapes": [], "output_shapes": []}
        )


def command() -> ValidateModel:
    model = ModelDefinition(name="deep", framework="pytorch", code="model = build()")
    return ValidateModel(payload=ValidateModelPayload(model=model))


async def test_an_answer_too_large_to_send_becomes_a_failure_that_says_why() -> None:
    producer = RefusesLargeMessages(limit=100_000)
    asked = command()
    await answer(asked, BuildsASummary(layers=5_000), producer)  # type: ignore[arg-type]
    [sent] = producer.sent
    assert isinstance(sent, ModelValidationFailed) and sent.correlation_id == asked.event_id
    assert "too large to send" in sent.payload.error


async def test_an_answer_that_fits_is_sent_as_it_is() -> None:
    producer = RefusesLargeMessages(limit=100_000)
    await answer(command(), BuildsASummary(layers=3), producer)  # type: ignore[arg-type]
    [sent] = producer.sent
    assert isinstance(sent, ModelValidated)
