"""A fake OpenAI-compatible provider on 127.0.0.1, run in a thread of the test process.

It answers POST /v1/chat/completions like a real provider, counts calls, and can be told
to misbehave: each scripted Reply is used once, in order, before the default answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.waiting import eventually


@dataclass
class Reply:
    """One scripted answer: a status with a JSON or raw body, optional headers and delay.

    drip_s spreads the body over that many seconds, a byte at a time; reset_after cuts the
    connection once that many bytes of a longer declared body are out."""

    status: int = 200
    json_body: Any = None
    raw_body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_s: float = 0.0
    reset_after: int | None = None


class _Reset(Exception):
    """Raised mid-body: uvicorn drops the connection, as a crashing upstream would."""


class FakeUpstream:
    def __init__(self, *, omit_sdk_fields: bool = True, port: int = 0) -> None:
        # Real providers (vLLM, Ollama, OpenAI) leave out delta and usage.cost: so do we.
        self.omit_sdk_fields = omit_sdk_fields
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.headers: list[dict[str, str]] = []
        # The client's port, per call: calls on one kept-alive connection share it.
        self.client_ports: list[int] = []
        self._script: deque[Reply] = deque()
        self._rules: dict[str, Reply] = {}
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-upstream", daemon=True)

    @property
    def base_url(self) -> str:
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def start(self) -> FakeUpstream:
        self._thread.start()
        eventually(
            lambda: self._server.started or not self._thread.is_alive(),
            what="the fake upstream to start",
            timeout=10,
            interval=0.01,
        )
        if not self._server.started:
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def rule(self, content: str, reply: Reply | None) -> None:
        """Answer every call whose last message is content with reply (None: stop doing so)."""
        with self._lock:
            if reply is None:
                self._rules.pop(content, None)
            else:
                self._rules[content] = reply

    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.calls.append(body)
            self.headers.append(dict(request.headers))
            self.client_ports.append(request.client.port if request.client else 0)
            reply = self._rules.get(_last_content(body))
            if reply is None and self._script:
                reply = self._script.popleft()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._reply(body, reply or Reply())
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _reply(self, body: dict[str, Any], reply: Reply) -> Response:
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.raw_body is not None:
            content = reply.raw_body.encode()
            media_type = "text/html"
        else:
            payload = reply.json_body if reply.json_body is not None else self.answer(body)
            content = json.dumps(payload).encode()
            media_type = "application/json"
        if not reply.drip_s and reply.reset_after is None:
            return Response(content, reply.status, reply.headers, media_type=media_type)
        headers = {**reply.headers, "content-length": str(len(content))}
        return StreamingResponse(
            _trickle(content, reply.drip_s, reply.reset_after), reply.status, headers, media_type
        )

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_in_flight = self.in_flight

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """What a plain OpenAI-compatible server says: 'upstream: <last message>'."""
        last = body["messages"][-1]["content"]
        content = f"upstream: {last if isinstance(last, str) else json.dumps(last)}"
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        usage: dict[str, Any] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        if not self.omit_sdk_fields:
            choice["delta"] = choice["message"]
            usage["cost"] = {"input_tokens_cost": 0.1, "output_tokens_cost": 0.2, "total_cost": 0.3}
        return {
            "id": f"up-{len(self.calls)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "choices": [choice],
            "usage": usage,
        }


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, until a test starts something there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _trickle(content: bytes, drip_s: float, reset_after: int | None) -> AsyncIterator[bytes]:
    for sent, byte in enumerate(content):
        if reset_after is not None and sent >= reset_after:
            raise _Reset("connection cut by the fake upstream")
        yield bytes([byte])
        if drip_s:
            await asyncio.sleep(drip_s / len(content))


def _last_content(body: dict[str, Any]) -> str:
    content = body["messages"][-1].get("content")
    return content if isinstance(content, str) else ""
