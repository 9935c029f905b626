"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

import chatq
from chatq.api.auth import SECURITY_SCHEMES
from chatq.api.errors import install_error_handlers
from chatq.api.limits import BodyLimit
from chatq.api.routes import async_routes, service_routes
from chatq.api.services import Services

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    services: Services, lifespan: Lifespan | None = None, max_request_bytes: int = 10 * 2**20
) -> FastAPI:
    """The app over ready services; lifespan, if given, runs beside it (the in-process worker).

    A request body over max_request_bytes is refused with 413 before it is read whole."""

    @asynccontextmanager
    async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="chatq",
        version=chatq.__version__,
        description="Asynchronous chat completions, wire-compatible with Perplexity's async API.",
        lifespan=lifespan or no_lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    app.state.services = services
    install_error_handlers(app)
    app.include_router(async_routes)
    app.include_router(service_routes)
    _customize_openapi(app, services)
    # Every route with its methods, for the Allow header of a 405 (see allowed_methods).
    app.state.api_routes = [
        route
        for route in (*app.router.routes, *async_routes.routes, *service_routes.routes)
        if isinstance(route, Route)
    ]
    return app


def _customize_openapi(app: FastAPI, services: Services) -> None:
    """Declare the bearer scheme (see chatq.api.auth), and name this server's models, which
    depend on its config."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema["components"]["securitySchemes"] = SECURITY_SCHEMES
        served = services.router.models()
        model = schema["components"]["schemas"]["ApiChatCompletionsRequest"]["properties"]["model"]
        model["description"] = "A model this server routes: " + ", ".join(served)
        model["examples"] = [m for m in served if not set(m) & set("*?[")]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
