"""Refuse request bodies over a size limit with a 413 in the documented error shape."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatq.api.errors import error_response


def too_large(max_bytes: int) -> str:
    """The 413's message."""
    return f"request body larger than {max_bytes} bytes"


def declared_too_large(content_length: str | None, max_bytes: int) -> bool:
    """Whether a Content-Length header's value declares a body past max_bytes (BodyLimit
    refuses it before any route runs; api/hot.py leaves such a request to it)."""
    return (
        content_length is not None and content_length.isdigit() and int(content_length) > max_bytes
    )


class BodyLimit:
    """Declared too large: refused before the app runs. Streamed past the limit: the read
    fails with an HTTPException, which the app's handlers turn into the same 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = too_large(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_too_large(Headers(scope=scope).get("content-length"), self.max_bytes):
            await error_response(413, self.message)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)
