"""The FastAPI application."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

import chatq
from chatq.api.access_log import AccessLog
from chatq.api.admin import admin_routes
from chatq.api.auth import SECURITY_SCHEMES
from chatq.api.context import ApiContext
from chatq.api.docs import install_docs
from chatq.api.errors import install_error_handlers
from chatq.api.health import health_routes
from chatq.api.hot import HotRoutes
from chatq.api.limits import BodyLimit
from chatq.api.metrics import HttpMetrics, metrics_routes
from chatq.api.model_list import model_routes
from chatq.api.models import (
    ApiChatCompletionsRequest,
    AsyncApiChatCompletionsBatchRequest,
    AsyncApiChatCompletionsRequest,
)
from chatq.api.routes import FAMILIES, async_routes
from chatq.api.sync_routes import sync_routes
from chatq.api.ui import install_ui
from chatq.api.usage import usage_routes

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    context: ApiContext,
    lifespan: Lifespan | None = None,
    max_request_bytes: int = 10 * 2**20,
    access_log: bool = False,
) -> FastAPI:
    """The app over a ready context; lifespan, if given, runs beside it (the in-process worker).

    A request body over max_request_bytes is refused with 413 before it is read whole."""

    @asynccontextmanager
    async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = ChatqApp(
        title="chatq",
        version=chatq.__version__,
        description="Asynchronous chat completions, wire-compatible with Perplexity's async API.",
        lifespan=lifespan or no_lifespan,
        docs_url=None,  # install_docs serves them, without a CDN
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    app.add_middleware(HttpMetrics)  # outside BodyLimit: it counts the 413s too
    if access_log:
        app.add_middleware(AccessLog)  # added last: it runs first, and sees even a 413
    # (the hot routes, served in front of all this, time and log themselves: api/hot.py)
    app.state.context = context
    app.state.started_at = int(time.time())
    install_error_handlers(app)
    routers = [
        *(async_routes(prefix) for prefix in FAMILIES),
        sync_routes,
        usage_routes,
        admin_routes,
        model_routes,
        health_routes,
        metrics_routes,
    ]
    for router in routers:
        app.include_router(router)
    install_docs(app)
    install_ui(app)
    _customize_openapi(app, context)
    # Every route with its methods, for the Allow header of a 405 (see allowed_methods).
    app.state.api_routes = [
        route
        for route in (*app.router.routes, *(r for router in routers for r in router.routes))
        if isinstance(route, Route)
    ]
    app.hot = HotRoutes(context, app.state.api_routes, max_request_bytes, access_log)
    return app


class ChatqApp(FastAPI):
    """FastAPI, with the hot routes answered before its own machinery (api/hot.py)."""

    hot: HotRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.hot is not None:
            scope["app"] = self
            if await self.hot.served(scope, receive, send):
                return
        await super().__call__(scope, receive, send)


def _customize_openapi(app: FastAPI, context: ApiContext) -> None:
    """Declare the bearer scheme (see chatq.api.auth), and name this server's models, which
    depend on its config."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema["components"]["securitySchemes"] = SECURITY_SCHEMES
        schema["components"]["schemas"].update(_request_bodies())
        served = context.models.models()
        model = schema["components"]["schemas"]["ApiChatCompletionsRequest"]["properties"]["model"]
        model["description"] = "A model this server routes: " + ", ".join(served)
        model["examples"] = [m for m in served if not set(m) & set("*?[")]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _request_bodies() -> dict[str, Any]:
    """The schemas of the bodies the routes read by hand (api/bodies.py), as FastAPI would
    have named them."""
    _, schemas = models_json_schema(
        [
            (AsyncApiChatCompletionsRequest, "validation"),
            (ApiChatCompletionsRequest, "validation"),
            (AsyncApiChatCompletionsBatchRequest, "validation"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    found: dict[str, Any] = schemas["$defs"]
    return found
