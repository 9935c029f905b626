"""Errors in Perplexity's shape, {"error": {"message", "type", "code"}}, and their handlers."""

from __future__ import annotations

import json
import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from chatq.api.bodies import is_json
from chatq.api.models import ErrorResponse
from chatq.store import StoreUnavailable

log = logging.getLogger("chatq.api")

_TYPES = {
    400: "invalid_request",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _TYPES.get(status, "error")
        self.headers = headers


def error_response(
    status: int, message: str, type_: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "error": {"message": message, "type": type_ or _TYPES.get(status, "error"), "code": status}
    }
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.type, exc.headers)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers: dict[str, Any] | None = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error_response(exc.status_code, message, headers=headers)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid_response(exc, request.headers.get("content-type"))

    async def on_unavailable(_: Request, exc: Exception) -> JSONResponse:
        return unavailable_response(exc)

    async def on_anything(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_response(exc)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StoreUnavailable, on_unavailable)
    app.add_exception_handler(Exception, on_anything)


def invalid_response(exc: RequestValidationError, content_type: str | None) -> JSONResponse:
    """FastAPI's 422 for exc, for a request sent with content_type."""
    detail = jsonable_encoder(exc.errors())
    if not is_json(content_type):
        # FastAPI leaves a non-JSON body unparsed, so its error would say only that the
        # body is not an object (curl -d sends application/x-www-form-urlencoded).
        for item in detail:
            if tuple(item.get("loc", ())) == ("body",):
                item["msg"] = (
                    f"the body must be JSON, sent with Content-Type: application/json "
                    f"(this request's Content-Type is {content_type!r})"
                )
    try:
        json.dumps(detail, allow_nan=False, ensure_ascii=False).encode()
    except ValueError:
        # The input echoed back holds NaN or Infinity, which JSON cannot carry, or a lone
        # surrogate, which UTF-8 cannot (UnicodeEncodeError is a ValueError).
        detail = [{k: v for k, v in item.items() if k != "input"} for item in detail]
    return JSONResponse({"detail": detail}, status_code=422)


def unavailable_response(exc: Exception) -> JSONResponse:
    log.warning("store unavailable: %s", exc)
    return error_response(503, "the database is unavailable; retry shortly")


def unexpected_response(exc: Exception) -> JSONResponse:
    # Logged in full here; the client gets no stack trace.
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal error")


def allowed_methods(request: Request) -> str:
    """Every method the routes of this path serve: Starlette names only the first route's.
    A path that a route names exactly is that route's alone, as OpenAPI matches a concrete
    path before a templated one (POST .../batch, not the GET and DELETE of .../{id})."""
    routes: list[Route] = request.app.state.api_routes
    path = request.url.path
    matching = [r for r in routes if r.path_regex.match(path)]
    fewest = min((len(r.param_convertors) for r in matching), default=0)
    methods = {m for r in matching if len(r.param_convertors) == fewest for m in r.methods or ()}
    return ", ".join(sorted(methods))


def has_non_finite(value: Any) -> bool:
    """NaN and Infinity parse in Python but are not JSON: no upstream could read them.

    A loop over a stack, not a recursion through generators: this runs on every item of a
    batch, and the recursion cost a batch of 1,000 about a quarter of its CPU."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def sse_event_schema(*events: str) -> dict[str, Any]:
    """The OpenAPI schema of one server-sent event, as a parsed event (data, event, id)."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "string", "description": "JSON"},
            "event": {"type": "string", "enum": list(events)},
            "id": {"type": "string"},
        },
    }


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route can answer with."""
    return {
        code: {"model": ErrorResponse, "description": HTTPStatus(code).phrase} for code in codes
    }
