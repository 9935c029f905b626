"""A fake OpenAI-compatible provider on 127.0.0.1, run in a thread of the test process.

It answers POST /v1/chat/completions like a real provider, counts calls, and can be told
to misbehave: each scripted Reply is used once, in order, before the default answer.

A call with `"stream": true` is answered as a provider streams (a 200 Reply without raw_body;
other Replies answer as they would without stream): server-sent chat.completion.chunk events,
the first with the role, then the content in pieces, then one with the finish_reason, a usage
chunk when stream_options.include_usage asks for it, then `data: [DONE]`. A client that goes
away before the stream has ended is recorded in `disconnects`.
"""

from __future__ import annotations

import asyncio
import json
import re
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
    connection once that many bytes of a longer declared body are out.

    For a streamed call: json_body, when given, is the completion to stream (its content, its
    other top-level fields such as citations in every chunk, its usage), else the default
    answer; delay_s passes before the response starts. pieces splits the content into that
    many pieces (default: word by word); token_delay_s passes before each piece. Faults, after
    that many content pieces: cut_after cuts the connection, malformed_after sends an event
    that is not JSON (then goes on), end_after ends the body cleanly with no finish_reason and
    no [DONE]. events, when given, are sent as they are instead (raw SSE text, each written
    on its own, token_delay_s apart).

    hold, when given, holds the answer back until the test sets it: a streamed one after
    hold_after content pieces, any other before it starts (a client that goes away meanwhile
    is let go)."""

    status: int = 200
    json_body: Any = None
    raw_body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_s: float = 0.0
    reset_after: int | None = None
    pieces: int | None = None
    token_delay_s: float = 0.0
    cut_after: int | None = None
    malformed_after: int | None = None
    end_after: int | None = None
    events: list[str] | None = None
    hold: threading.Event | None = None
    hold_after: int = 0


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
        # The calls (numbered from 0, as in `calls`) whose client went away mid-stream.
        self.disconnects: list[int] = []
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
            call = len(self.calls) - 1
        try:
            reply = reply or Reply()
            if body.get("stream") is True and reply.status == 200 and reply.raw_body is None:
                return await self._stream(request, call, body, reply)
            return await self._reply(body, reply)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _reply(self, body: dict[str, Any], reply: Reply) -> Response:
        await _held(reply)
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

    def disconnect_count(self) -> int:
        with self._lock:
            return len(self.disconnects)

    async def _stream(
        self, request: Request, call: int, body: dict[str, Any], reply: Reply
    ) -> Response:
        if reply.delay_s and await _client_left(request, reply.delay_s):
            self._disconnected(call)
            return Response(status_code=499)  # nobody reads it
        events = reply.events if reply.events is not None else self._chunk_events(body, reply)
        return StreamingResponse(
            self._send_events(call, events, reply),
            200,
            reply.headers,
            media_type="text/event-stream",
        )

    def _chunk_events(self, body: dict[str, Any], reply: Reply) -> list[str]:
        """The events of a streamed answer, as a provider sends them; the faults of reply."""
        whole = reply.json_body if reply.json_body is not None else self.answer(body)
        choice = whole["choices"][0]
        content = choice["message"]["content"]
        header = {
            "id": whole.get("id", f"up-{len(self.calls)}"),
            "object": "chat.completion.chunk",
            "created": whole.get("created", int(time.time())),
            "model": whole.get("model", body.get("model", "unknown")),
        }
        # Everything else at the top level (citations, search_results, ...) rides along in
        # every chunk, as Perplexity sends it.
        extra = {
            k: v
            for k, v in whole.items()
            if k not in ("id", "object", "created", "model", "choices", "usage")
        }
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data: dict[str, Any] = {
                **header,
                **extra,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if with_usage:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        for sent, piece in enumerate(_split(content, reply.pieces)):
            if sent == reply.cut_after:
                events.append(_CUT)
            if sent == reply.end_after:
                return events
            if sent == reply.malformed_after:
                events.append('data: {"choices": [tru\n\n')
            events.append(chunk({"content": piece}))
        events.append(chunk({}, choice.get("finish_reason") or "stop"))
        if with_usage:
            usage = {**header, **extra, "choices": [], "usage": whole.get("usage")}
            events.append(f"data: {json.dumps(usage)}\n\n")
        events.append("data: [DONE]\n\n")
        return events

    async def _send_events(
        self, call: int, events: list[str], reply: Reply
    ) -> AsyncIterator[bytes]:
        over = False
        try:
            for sent, event in enumerate(events):
                if reply.hold is not None and sent == reply.hold_after + 1:
                    await _held(reply)  # the role chunk, then hold_after content pieces, are out
                if event is _CUT:
                    over = True
                    raise _Reset("connection cut by the fake upstream mid-stream")
                if reply.token_delay_s:
                    await asyncio.sleep(reply.token_delay_s)
                yield event.encode()
            over = True
        finally:
            # Cancelled by the server when the client went away, or closed after a failed send.
            if not over:
                self._disconnected(call)

    def _disconnected(self, call: int) -> None:
        with self._lock:
            self.disconnects.append(call)

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


async def _held(reply: Reply) -> None:
    """Until the reply's hold is set (polled, so that a client that leaves cancels it)."""
    # ASYNC110: a threading.Event set by the test, which the event loop cannot await.
    while reply.hold is not None and not reply.hold.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


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


# Marks where _chunk_events' connection is cut.
_CUT = "<cut the connection here>"


def _split(content: str, pieces: int | None) -> list[str]:
    """content in that many pieces (word by word when None); they concatenate to content."""
    if pieces is None:
        words = re.split(r"(?<=\s)(?=\S)", content)
        return [w for w in words if w]
    size = -(-len(content) // max(1, pieces))  # ceiling division
    return [content[i : i + size] for i in range(0, len(content), max(1, size))]


async def _client_left(request: Request, seconds: float) -> bool:
    """Wait that long; True as soon as the client disconnects meanwhile. (The body is read:
    the next ASGI message can only be the disconnect.)"""
    try:
        async with asyncio.timeout(seconds):
            message = await request.receive()
    except TimeoutError:
        return False
    return bool(message["type"] == "http.disconnect")


def _last_content(body: dict[str, Any]) -> str:
    content = body["messages"][-1].get("content")
    return content if isinstance(content, str) else ""
