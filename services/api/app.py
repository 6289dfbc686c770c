"""The FastAPI application: routes under /api/v1, problem details, bearer or session auth."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from services.api import problems
from services.api.commands import CommandBus
from services.api.deps import require_token
from services.api.limits import BodyLimit
from services.api.live import LiveFeeds
from services.api.openapi import DocumentedAPI, answers
from services.api.routes import (
    commands,
    configurations,
    datasources,
    deployments,
    health,
    inferences,
    models,
    results,
    session,
    updates,
)
from services.api.sessions import Sessions
from services.api.web import pages
from shared.db.engine import make_engine, make_sessionmaker
from shared.kafka import Producer
from shared.settings import Settings

log = logging.getLogger("kafkaml.api")


def create_app(settings: Settings) -> FastAPI:
    if not settings.api_token:
        raise RuntimeError("KAFKAML_API_TOKEN is not set: the API refuses to run without a token")
    database_url = settings.api_database_url
    if not database_url:
        log.warning("KAFKAML_API_DATABASE_URL is not set: reading through KAFKAML_DATABASE_URL (not read-only)")
        database_url = settings.db_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(database_url)
        producer = Producer(settings)
        await producer.start()
        bus = CommandBus(settings, producer)
        await bus.start()
        app.state.sessions = make_sessionmaker(engine)
        app.state.producer = producer
        app.state.bus = bus
        app.state.live = LiveFeeds(settings)
        log.info("API ready on %s:%s", settings.api_host, settings.api_port)
        try:
            yield
        finally:
            await app.state.live.close()
            await bus.stop()
            await producer.stop()
            await engine.dispose()

    app = DocumentedAPI(
        title="Kafka-ML",
        version="0.1.0",
        description="Train and serve TensorFlow and PyTorch models on Kafka streams. "
        "Every route but /api/v1/health and /api/v1/session needs `Authorization: Bearer <token>`, or a "
        "browser's session cookie (POST /api/v1/session) with `X-CSRF-Token` on mutations.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.web_sessions = Sessions(settings.api_session_ttl_s)
    problems.install(app)
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.include_router(health.router, prefix="/api/v1")
    app.include_router(session.router, prefix="/api/v1")
    protected = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)], responses=answers(401))
    for module in (models, configurations, deployments, results, datasources, inferences, commands, updates):
        protected.include_router(module.router)
    app.include_router(protected)

    # ---- the web application's pages and static files (services/api/web) ----
    app.include_router(pages.router)
    app.mount("/static", pages.static_files(), name="static")
    # ---- end of the web application ----
    return app
