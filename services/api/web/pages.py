"""The web pages: shells rendered from templates, each with the same navigation and its script.

The gateway stays thin: a page route only checks the session (none: 303 to /sign-in) and
renders a shell; the page's module fetches everything from /api/v1 with the session cookie,
so the browser sees exactly what programs see. The CSRF token goes into a <meta> for api.js.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.api.deps import PathId
from services.api.sessions import current_session
from shared.frameworks import ALLOWED

HERE = Path(str(files("services.api.web")))
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))

NAVIGATION = (
    ("/models", "Models"),
    ("/configurations", "Configurations"),
    ("/deployments", "Deployments"),
    ("/results", "Results"),
    ("/datasources", "Data sources"),
    ("/inferences", "Inferences"),
)

# What each framework's fit and evaluate take, for the deployment form (the orchestrator's own list).
VOCABULARY = {
    framework: {section: sorted(names) for section, names in sections.items()}
    for framework, sections in ALLOWED.items()
}

router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


def render(request: Request, template: str, title: str, **context: Any) -> Response:
    session = current_session(request)
    if session is None and template != "sign-in.html":
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(wanted, safe='')}", status_code=303)
    section = "/" + request.url.path.strip("/").split("/")[0]
    body = templates.get_template(template).render(
        title=title,
        navigation=NAVIGATION,
        section=section,
        signed_in=session is not None,
        csrf_token=session.csrf_token if session else "",
        **context,
    )
    headers = {"Cache-Control": "no-store"}
    return HTMLResponse(body, headers=headers)


@router.get("/sign-in")
async def sign_in(request: Request) -> Response:
    return render(request, "sign-in.html", "Sign in")


@router.get("/")
async def home(request: Request) -> Response:
    if current_session(request) is None:
        return RedirectResponse("/sign-in", status_code=303)
    return RedirectResponse("/models", status_code=303)


@router.get("/models")
async def models(request: Request) -> Response:
    return render(request, "models.html", "Models")


@router.get("/models/new")
async def new_model(request: Request) -> Response:
    return render(request, "model.html", "New model", item=None)


@router.get("/models/{model_id}")
async def model(request: Request, model_id: PathId) -> Response:
    return render(request, "model.html", f"Model {model_id}", item=model_id)


@router.get("/configurations")
async def configurations(request: Request) -> Response:
    return render(request, "configurations.html", "Configurations")


@router.get("/configurations/{configuration_id}")
async def configuration(request: Request, configuration_id: PathId) -> Response:
    return render(request, "configuration.html", f"Configuration {configuration_id}", item=configuration_id)


@router.get("/deployments")
async def deployments(request: Request) -> Response:
    return render(request, "deployments.html", "Deployments")


@router.get("/deployments/new")
async def new_deployment(request: Request) -> Response:
    return render(request, "deployment-new.html", "New deployment", vocabulary=json.dumps(VOCABULARY))


@router.get("/results")
async def results(request: Request) -> Response:
    return render(request, "results.html", "Results")


@router.get("/results/{result_id}")
async def result(request: Request, result_id: PathId) -> Response:
    return render(request, "result.html", f"Result {result_id}", item=result_id)


@router.get("/datasources")
async def datasources(request: Request) -> Response:
    return render(request, "datasources.html", "Data sources")


@router.get("/inferences")
async def inferences(request: Request) -> Response:
    return render(request, "inferences.html", "Inferences")


@router.get("/inferences/new")
async def new_inference(request: Request) -> Response:
    return render(request, "inference-new.html", "New inference")


@router.get("/inferences/{inference_id}")
async def inference(request: Request, inference_id: PathId) -> Response:
    return render(request, "inference.html", f"Inference {inference_id}", item=inference_id)
