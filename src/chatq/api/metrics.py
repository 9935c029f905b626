"""GET /metrics (Prometheus text), and the HTTP latency of every request."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.types import Scope

from chatq import metrics
from chatq.api.auth import authenticate
from chatq.api.context import ApiContext
from chatq.api.timed import TimedRequests
from chatq.metrics.exposition import CONTENT_TYPE

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

metrics_routes = APIRouter()


# Not in the OpenAPI document: it is for Prometheus, not for API clients (docs/metrics.md).
@metrics_routes.get("/metrics", include_in_schema=False)
async def scrape(http: Request) -> Response:
    ctx: ApiContext = http.app.state.context
    if ctx.metrics_require_key:
        await authenticate(http)  # any valid key: 401 in the documented shape otherwise
    return Response(await ctx.exposition.render(), media_type=CONTENT_TYPE)


class HttpMetrics(TimedRequests):
    """Observes each HTTP request's duration by route template (never the raw path: it holds
    request ids), method and status."""

    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        observe_http(scope, status, seconds)


def observe_http(scope: Scope, status: int, seconds: float) -> None:
    """One HTTP request's duration, by route template, method and status."""
    method = scope["method"] if scope["method"] in _METHODS else "other"
    metrics.HTTP_DURATION.labels(route_template(scope), method, str(status)).observe(seconds)


def route_template(scope: Scope) -> str:
    """The path template of the route that took the request (the router writes it into the
    scope), or "unmatched": a client's path never becomes a label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Starlette's own routes (the docs pages) leave no route in the scope, only their
    # endpoint; they have no parameters, so their path is their template.
    if "endpoint" in scope and not scope.get("path_params"):
        return str(scope["path"])
    return "unmatched"
