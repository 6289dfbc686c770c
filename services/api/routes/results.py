"""Training results: curves, metrics, confusion matrix, the trained model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from sqlalchemy import select

from services.api import pictures, queries
from services.api.deps import BusDep, PathId, QueryId, SessionDep
from services.api.openapi import SENT, answers, binary
from services.api.outcomes import pending, raise_if_rejected
from services.api.queries import ResultPublic, VersionPublic, WindowPublic
from services.api.routes.listing import LISTED, PageDep, paginate, words
from shared.db.repositories import VersionRepository
from shared.db.tables import ModelVersionRow, TrainingResult
from shared.errors import Conflict, NotFound
from shared.events.training import StopTraining, StopTrainingPayload

router = APIRouter(prefix="/results", tags=["training"])

# Version numbers are PostgreSQL integers, from 1.
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]

MEDIA = {"keras": "application/octet-stream", "pt": "application/octet-stream"}


async def one(session: SessionDep, result_id: int) -> ResultPublic:
    found = await queries.results(session, result_id=result_id)
    if not found:
        raise NotFound(f"result {result_id} does not exist", field="result_id")
    return found[0]


@router.get("", response_model=list[ResultPublic], summary="List training results", responses=LISTED | answers(422))
async def list_results(
    session: SessionDep, response: Response, page: PageDep, deployment_id: QueryId = None
) -> list[ResultPublic]:
    found = await queries.results(session, deployment_id=deployment_id)
    return paginate(
        response, found, page, lambda r: words(r.id, r.status, f"model {r.model_id}", f"deployment {r.deployment_id}")
    )


@router.get("/{result_id}", response_model=ResultPublic, summary="Get a training result", responses=answers(404, 422))
async def get_result(result_id: PathId, session: SessionDep) -> ResultPublic:
    return await one(session, result_id)


def model_file(result_id: int, version: ModelVersionRow, filename: str) -> Response:
    """A stored version as a download (the same headers for the newest and a named version)."""
    return Response(
        version.data,
        media_type=MEDIA.get(version.format, "application/octet-stream"),
        headers={
            "Content-Disposition": f'attachment; filename="{filename}.{version.format}"',
            "X-Checksum-SHA256": version.sha256,
            "X-Model-Version": str(version.version),
        },
    )


@router.get(
    "/{result_id}/model",
    summary="Download the trained model (.keras or .pt state dict): its newest version",
    response_class=Response,
    responses=binary("application/octet-stream", "The trained model") | answers(404, 409, 422),
)
async def download_model(result_id: PathId, session: SessionDep) -> Response:
    await one(session, result_id)
    version = await VersionRepository(session).get(result_id)
    if version is None:
        raise Conflict(f"result {result_id} has no trained model yet", field="result_id")
    return model_file(result_id, version, f"result-{result_id}")


@router.get(
    "/{result_id}/versions",
    response_model=list[VersionPublic],
    summary="The stored model versions of a result, oldest first",
    responses=answers(404, 422),
)
async def list_versions(result_id: PathId, session: SessionDep) -> list[VersionPublic]:
    await one(session, result_id)
    return await queries.versions(session, result_id)


@router.get(
    "/{result_id}/versions/{version}/model",
    summary="Download one model version (.keras or .pt state dict)",
    response_class=Response,
    responses=binary("application/octet-stream", "The model version") | answers(404, 422),
)
async def download_version(result_id: PathId, version: VersionNumber, session: SessionDep) -> Response:
    await one(session, result_id)
    stored = await VersionRepository(session).get(result_id, version)
    if stored is None:
        raise NotFound(f"result {result_id} has no version {version}", field="version")
    return model_file(result_id, stored, f"result-{result_id}-v{version}")


@router.get(
    "/{result_id}/windows",
    response_model=list[WindowPublic],
    summary="The windows of an incremental training: prequential, train and validation metrics",
    responses=answers(404, 422),
)
async def list_windows(result_id: PathId, session: SessionDep) -> list[WindowPublic]:
    await one(session, result_id)
    return await queries.windows(session, result_id)


@router.get(
    "/{result_id}/confusion-matrix.png",
    summary="The confusion matrix as a picture",
    response_class=Response,
    responses=binary("image/png", "A PNG picture") | answers(404, 409, 422),
)
async def confusion_matrix_picture(result_id: PathId, session: SessionDep) -> Response:
    result = await one(session, result_id)
    if not result.confusion_matrix:
        raise Conflict(
            f'result {result_id} has no confusion matrix (deploy with "confusion_matrix": true; '
            "it is computed for classifiers once training has finished)",
            field="result_id",
        )
    png = await pictures.confusion_matrix_png(result.confusion_matrix, f"result {result_id}")
    return Response(png, media_type="image/png")


@router.get(
    "/{result_id}/curves.png",
    summary="The learning curves as a picture",
    response_class=Response,
    responses=binary("image/png", "A PNG picture") | answers(404, 409, 422),
)
async def curves_picture(result_id: PathId, session: SessionDep) -> Response:
    result = await one(session, result_id)
    if not result.train_metrics:
        raise Conflict(f"result {result_id} has no finished epoch yet", field="result_id")
    png = await pictures.curves_png(result.train_metrics, result.val_metrics, f"result {result_id}")
    return Response(png, media_type="image/png")


@router.post(
    "/{result_id}/stop", response_model=ResultPublic, summary="Stop a running training job", responses=answers(*SENT)
)
async def stop_result(result_id: PathId, bus: BusDep, session: SessionDep) -> Any:
    command = StopTraining(payload=StopTrainingPayload(result_id=result_id))
    outcome = await bus.send(command)
    if outcome is None:
        return pending(command)
    raise_if_rejected(outcome)
    return await one(session, result_id)


@router.get(
    "/{result_id}/inference-config",
    summary="Input format and config suggested from the training stream",
    responses=answers(404, 409, 422),
)
async def inference_config(result_id: PathId, session: SessionDep) -> dict[str, Any]:
    await one(session, result_id)
    reference = await session.scalar(select(TrainingResult.datasource).where(TrainingResult.id == result_id))
    if not reference:
        raise Conflict(f"result {result_id} has not received its training stream yet", field="result_id")
    return {"input_format": reference["input_format"], "input_config": reference["input_config"]}
