"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

import chatq
from chatq.api.errors import install_error_handlers
from chatq.api.routes import async_routes, service_routes
from chatq.api.services import Services

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(services: Services, lifespan: Lifespan | None = None) -> FastAPI:
    """The app over ready services; lifespan, if given, runs beside it (the in-process worker)."""

    @asynccontextmanager
    async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="chatq",
        version=chatq.__version__,
        description="Asynchronous chat completions, wire-compatible with Perplexity's async API.",
        lifespan=lifespan or no_lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(async_routes)
    app.include_router(service_routes)
    return app
