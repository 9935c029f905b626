"""An ASGI middleware base for what is observed once per HTTP request: its status and how long
it took, told to `finished` when the app is done (a 500 if it failed before answering)."""

from __future__ import annotations

import abc
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class TimedRequests(abc.ABC):
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
            self.finished(scope, status, time.perf_counter() - started)

    @abc.abstractmethod
    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        """One request is done: observe it."""
