"""The access log (--access-log): one line per HTTP request, on the logger chatq.access.

A line holds the method, path, status and milliseconds taken, never a header: API keys
travel in the Authorization header and must not reach a log. A line about one request (a
path with its id) carries request_id for --log-format json."""

from __future__ import annotations

import logging

from starlette.types import Scope

from chatq.api.timed import TimedRequests

log = logging.getLogger("chatq.access")


class AccessLog(TimedRequests):
    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        log_access(scope, status, seconds)


def log_access(scope: Scope, status: int, seconds: float) -> None:
    """The access log's line about one HTTP request."""
    path = scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
    client = scope.get("client")
    # The router has put the path's parameters in the scope: a line about one request
    # names it for --log-format json.
    request_id = scope.get("path_params", {}).get("api_request")
    log.info(
        "%s %s %s %d %.1fms",
        client[0] if client else "-",
        scope["method"],
        path,
        status,
        seconds * 1000,
        extra=None if request_id is None else {"request_id": request_id},
    )
