"""The access log (--access-log): one line per HTTP request, on the logger chatq.access.

A line holds the method, path, status and milliseconds taken, never a header: API keys
travel in the Authorization header and must not reach a log. A line about one request (a
path with its id) carries request_id for --log-format json."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("chatq.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            path = scope["path"] + (
                f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
            )
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
                (time.perf_counter() - started) * 1000,
                extra=None if request_id is None else {"request_id": request_id},
            )
