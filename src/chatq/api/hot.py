"""The hot routes, served without FastAPI's per-request machinery: create, list and get one,
under both path families.

A profile of get one put 57% of the event loop's time in FastAPI's routing, dependency
solving and response handling, and 11% in the middlewares (docs/benchmarks.md). So the app
looks at each HTTP request first (ChatqApp in api/app.py): one of these routes, in its usual
shape, is answered here, authenticated by a direct call, its body read and validated once,
its answer encoded once with orjson. Anything else, and any unusual shape of these (a query
parameter other than limit and next_token, a long-poll's ?wait=, HEAD), goes on to FastAPI,
whose routes are the same handlers' and still make the OpenAPI document. Errors are answered
by the same functions as FastAPI's exception handlers, in the same shapes; the HTTP metrics
and the access log see these requests as they see the others, under the same route.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi.exceptions import RequestValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from chatq.api.access_log import log_access
from chatq.api.auth import Caller, caller
from chatq.api.bodies import parsed_json, wrapped
from chatq.api.context import ApiContext
from chatq.api.errors import (
    ApiError,
    error_response,
    invalid_response,
    unavailable_response,
    unexpected_response,
)
from chatq.api.limits import declared_too_large, too_large
from chatq.api.metrics import observe_http
from chatq.api.routes import FAMILIES, created, not_found, page_of
from chatq.domain import NO_FILTER
from chatq.json_text import response_body
from chatq.objects import full_object
from chatq.store import StoreUnavailable

_MAX_LIMIT = 1000  # as the list route's limit parameter declares
_JSON = (b"content-type", b"application/json")
# The request headers the hot routes read, by their lowercased raw names.
_WANTED = (b"authorization", b"content-length", b"content-type")


@dataclass(frozen=True, slots=True)
class _Answer:
    body: bytes
    headers: dict[str, str] | None = None


Handler = Callable[["HotRoutes", Scope, Receive, dict[bytes, str]], Awaitable[_Answer]]


class HotRoutes:
    """Answers the hot routes' requests in their usual shapes; says False for any other."""

    def __init__(
        self,
        context: ApiContext,
        routes: list[BaseRoute],
        max_request_bytes: int,
        access_log: bool,
    ) -> None:
        self.ctx = context
        self.max_bytes = max_request_bytes
        self.too_large = too_large(max_request_bytes)
        self.access_log = access_log
        # (method, path) -> (handler, the FastAPI route it stands for: the metrics' label)
        self._exact: dict[tuple[str, str], tuple[Handler, Route]] = {}
        self._one: dict[str, Route] = {}  # family prefix + "/" -> the get-one route
        for prefix in FAMILIES:
            self._exact["POST", prefix] = (_create, _route(routes, prefix, "POST"))
            self._exact["GET", prefix] = (_list, _route(routes, prefix, "GET"))
            self._one[prefix + "/"] = _route(routes, prefix + "/{api_request}", "GET")

    async def served(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve an HTTP request if it is one of the hot routes' usual shapes; False (and
        nothing received or sent) if FastAPI is to take it."""
        if scope.get("root_path"):
            return False  # a path to strip first: FastAPI's router knows how
        method, path = scope["method"], scope["path"]
        found = self._exact.get((method, path))
        if found is not None:
            handler, route = found
            path_params: dict[str, str] = {}
        elif method == "GET" and not scope["query_string"]:
            prefix, _, api_request = path.rpartition("/")
            route_one = self._one.get(prefix + "/")
            if route_one is None or not api_request:
                return False
            handler, route, path_params = _get_one, route_one, {"api_request": api_request}
        else:
            return False
        if handler is _list and not _plain_list(scope["query_string"]):
            return False
        headers = _headers(scope)
        if declared_too_large(headers.get(b"content-length"), self.max_bytes):
            return False  # BodyLimit refuses it, before any route is chosen
        scope["route"], scope["path_params"], scope["endpoint"] = route, path_params, route.endpoint
        await self._serve(scope, receive, send, handler, headers)
        return True

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        handler: Handler,
        headers: dict[bytes, str],
    ) -> None:
        started = time.perf_counter()
        status = 500  # as the middlewares count a request that fails before it answers
        try:
            try:
                answer = await handler(self, scope, receive, headers)
            except ClientDisconnect:
                return  # gone before its body came: nobody to answer
            except Exception as exc:  # answered as FastAPI's exception handlers answer it
                error = _error_response(exc, headers)
                status = error.status_code
                await error(scope, receive, send)
                return
            extra = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in (answer.headers or {}).items()
            ]
            status = 200
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(answer.body)).encode()),
                        _JSON,
                        *extra,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": answer.body})
        finally:
            seconds = time.perf_counter() - started
            observe_http(scope, status, seconds)
            if self.access_log:
                log_access(scope, status, seconds)

    async def caller(self, headers: dict[bytes, str]) -> Caller:
        return await caller(self.ctx, headers.get(b"authorization", ""))

    async def body(self, receive: Receive) -> bytes:
        """The request's body; a 413 past max_request_bytes, as BodyLimit answers it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise ApiError(413, self.too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _route(routes: list[BaseRoute], path: str, method: str) -> Route:
    for route in routes:
        if isinstance(route, Route) and route.path == path and method in (route.methods or ()):
            return route
    raise LookupError(f"no {method} {path} route")


def _headers(scope: Scope) -> dict[bytes, str]:
    """The headers the hot routes read; the first of each, as Starlette's Headers.get."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _plain_list(query_string: bytes) -> bool:
    """Whether a list's query holds only limit and next_token, each once, limit a plain
    number in range: the shape served here (FastAPI checks and answers every other)."""
    if not query_string:
        return True
    seen = set()
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen or name not in ("limit", "next_token"):
            return False
        if name == "limit" and not _plain_limit(value):
            return False
        seen.add(name)
    return True


def _plain_limit(value: str) -> bool:
    return value.isascii() and value.isdigit() and value[0] != "0" and int(value) <= _MAX_LIMIT


def _error_response(exc: Exception, headers: dict[bytes, str]) -> Response:
    """The response FastAPI's exception handlers (api/errors.py) give exc."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, exc.type, exc.headers)
    if isinstance(exc, RequestValidationError):
        return invalid_response(exc, headers.get(b"content-type"))
    if isinstance(exc, StoreUnavailable):
        return unavailable_response(exc)
    return unexpected_response(exc)


async def _create(
    hot: HotRoutes, scope: Scope, receive: Receive, headers: dict[bytes, str]
) -> _Answer:
    who = await hot.caller(headers)
    raw = await hot.body(receive)
    body = wrapped(parsed_json(raw, headers.get(b"content-type")))
    found, extra = await created(who, body, Request(scope, receive))
    return _Answer(response_body(found), extra)


async def _list(
    hot: HotRoutes, scope: Scope, receive: Receive, headers: dict[bytes, str]
) -> _Answer:
    who = await hot.caller(headers)
    params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    limit = int(params.get("limit", 20))
    return _Answer(response_body(await page_of(who, limit, params.get("next_token"), NO_FILTER)))


async def _get_one(
    hot: HotRoutes, scope: Scope, receive: Receive, headers: dict[bytes, str]
) -> _Answer:
    who = await hot.caller(headers)
    api_request = scope["path_params"]["api_request"]
    job = await hot.ctx.store.get(who.owner, api_request)
    if job is None:
        raise not_found(api_request)
    return _Answer(response_body(full_object(job)))
