"""Models: user code that builds a TensorFlow/Keras or PyTorch model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from services.api.deps import BusDep, PathId, SessionDep
from services.api.openapi import SENT, SENT_WITH_BODY, answers
from services.api.outcomes import no_content, pending, raise_if_rejected
from services.api.routes.listing import LISTED, PageDep, paginate, words
from shared.db.records import model_record
from shared.db.repositories import ModelRepository
from shared.errors import NotFound
from shared.events import CreateModel, DeleteModel, ModelCreated, ModelDefinition, ModelRecord
from shared.events.catalog import DeleteModelPayload

router = APIRouter(prefix="/models", tags=["models"])

EXAMPLE = {
    "name": "digits",
    "framework": "tensorflow",
    "imports": "",
    "code": "model = tf.keras.models.Sequential([\n"
    "  tf.keras.layers.Flatten(input_shape=(8, 8)),\n"
    "  tf.keras.layers.Dense(128, activation='relu'),\n"
    "  tf.keras.layers.Dense(10, activation='softmax')\n])\n"
    "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n",
    "description": "",
    "upper_model_id": None,
}


@router.post(
    "",
    status_code=201,
    response_model=ModelRecord,
    summary="Define a model (validated in the trainer's sandbox)",
    responses=answers(*SENT_WITH_BODY),
)
async def create_model(
    body: Annotated[ModelDefinition, Body(openapi_examples={"keras": {"value": EXAMPLE}})], bus: BusDep
) -> Any:
    command = CreateModel(payload=body)
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    assert isinstance(outcome, ModelCreated)
    return outcome.payload


@router.get("", response_model=list[ModelRecord], summary="List models", responses=LISTED | answers(422))
async def list_models(session: SessionDep, response: Response, page: PageDep) -> list[ModelRecord]:
    found = [model_record(m) for m in await ModelRepository(session).all()]
    return paginate(response, found, page, lambda m: words(m.id, m.name, m.framework, m.description))


@router.get("/{model_id}", response_model=ModelRecord, summary="Get a model", responses=answers(404, 422))
async def get_model(model_id: PathId, session: SessionDep) -> ModelRecord:
    model = await ModelRepository(session).get(model_id)
    if model is None:
        raise NotFound(f"model {model_id} does not exist", field="model_id")
    return model_record(model)


@router.delete(
    "/{model_id}",
    status_code=204,
    summary="Delete a model (409 while a configuration uses it)",
    responses=answers(*SENT),
)
async def delete_model(model_id: PathId, bus: BusDep) -> Response:
    command = DeleteModel(payload=DeleteModelPayload(model_id=model_id))
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    return no_content()
