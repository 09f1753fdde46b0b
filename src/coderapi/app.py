"""create_app(settings): the whole server, built from its settings and nothing else."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI

from coderapi.api.body_limit import BodyLimitMiddleware, limit_by_route
from coderapi.api.errors import install_error_handlers
from coderapi.api.openapi import install_openapi
from coderapi.api.request_deadline import RequestDeadlineMiddleware
from coderapi.api.request_id import RequestIdMiddleware
from coderapi.api.routes import billing, health, inference, keys, logs, models, tokenizer, usage
from coderapi.backends.factory import EngineFactory, build_served_models
from coderapi.config import Settings
from coderapi.datadir import prepare_data_dir
from coderapi.services.container import Services
from coderapi.web.install import install_dashboard
from coderapi.weights.packaged import Progress

log = logging.getLogger("coderapi")

Announce = Callable[[Services, str | None], None]


def create_app(
    settings: Settings,
    *,
    engine_factory: EngineFactory | None = None,
    weights_progress: Progress | None = None,
    announce: Announce | None = None,
) -> FastAPI:
    prepare_data_dir(settings.data_dir)  # 0700: it holds the database, the session secret, the models
    services = Services.build(settings, build_served_models(settings, engine_factory, weights_progress))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(services.db.upgrade)
        await services.ledger.recover()  # usage a killed gateway journaled but never committed
        secret = await services.signups.bootstrap_admin() if settings.bootstrap_admin else None
        if announce is not None:
            announce(services, secret)
        # Models load in the background: /health answers 503 until they are ready.
        loading = asyncio.create_task(services.start_models())
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await services.close()

    app = FastAPI(
        title="coderapi",
        version="0.1.0",
        description="Self-hosted OpenAI-compatible API for code models.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger UI needs a CDN; the dashboard serves /docs itself
        redoc_url=None,
    )
    app.state.services = services
    # Inside RequestIdMiddleware, so a 413 carries x-request-id too.
    limit = limit_by_route(settings.max_request_body_bytes, settings.max_other_body_bytes)
    app.add_middleware(BodyLimitMiddleware, limit_for=limit, timeout_seconds=settings.body_timeout_seconds)
    app.add_middleware(RequestDeadlineMiddleware, seconds=settings.request_time_limit_seconds)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    for module in (inference, models, tokenizer, health, keys, usage, logs, billing):
        app.include_router(module.router)
    install_dashboard(app, services)
    install_openapi(app)
    return app
