"""A slow OpenAI-compatible upstream for the benches: every answer takes DELAY seconds.

Plain asyncio and HTTP/1.1 keep-alive, no framework, so that its own cost stays small next to
the chatq processes it feeds on the same cores. POST /v1/chat/completions answers a valid
chat.completion after DELAY seconds; GET /healthz answers at once; GET /stats gives the calls
served, the peak of calls in flight and how many were streamed.

A call with "stream": true is answered as a provider streams: server-sent
chat.completion.chunk events (chunked transfer encoding, so the connection is kept alive),
the first with the role, then each token of the answer in an event of its own, spread evenly
over DELAY (token i is due at (i + 1) x DELAY / TOKENS after the request; the tokens that
are due when the server gets to them go out in one write, as a busy provider's would), then
a chunk with the finish_reason, a usage chunk when stream_options.include_usage asks for it,
and `data: [DONE]`. The events are encoded once, at start-up: every stream sends the same.

With TOKENS, the answer's content is that many tokens ("w0 w1 ..."), streamed or not;
without, a short sentence, streamed word by word.

    python bench/slow_upstream.py PORT DELAY_S [TOKENS]
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any

HEADER = {"id": "chatcmpl-slow", "created": 1_700_000_000, "model": "slow"}
SHORT = ["A ", "slow ", "and ", "steady ", "answer."]


def event(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return event({**HEADER, "object": "chat.completion.chunk", "choices": [choice]})


class Answer:
    """One answer, encoded once: whole, and as the events of a stream."""

    def __init__(self, tokens: list[str]) -> None:
        content = "".join(tokens)
        usage = {"prompt_tokens": 9, "completion_tokens": len(tokens)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        message = {"role": "assistant", "content": content}
        self.whole = json.dumps(
            {
                **HEADER,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            }
        ).encode()
        self.first = chunk({"role": "assistant", "content": ""})
        self.tokens = [chunk({"content": token}) for token in tokens]
        self.finish = chunk({}, "stop")
        self.usage = event(
            {**HEADER, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        )
        self.done = event("[DONE]")


class Upstream:
    def __init__(self, delay_s: float, tokens: int | None) -> None:
        self.delay_s = delay_s
        words = SHORT if tokens is None else [f"w{i} " for i in range(tokens - 1)] + ["end."]
        self.answer = Answer(words)
        self.in_flight = 0
        self.peak = 0
        self.served = 0
        self.streamed = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, header_block = head.decode("latin-1").partition("\r\n")
                method, path, _ = request_line.split(" ", 2)
                length = 0
                for line in header_block.split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if method == "POST" and path.endswith("/chat/completions"):
                    stream, usage = _stream_options(body)
                    if stream:
                        await self._stream(writer, usage)
                        continue
                    answer = await self._complete()
                elif path == "/stats":
                    stats = {"served": self.served, "peak": self.peak, "streamed": self.streamed}
                    answer = json.dumps(stats).encode()
                else:
                    answer = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _complete(self) -> bytes:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        self.served += 1
        return self.answer.whole

    async def _stream(self, writer: asyncio.StreamWriter, usage: bool) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        answer = self.answer
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            _write_chunk(writer, answer.first)
            await writer.drain()
            loop = asyncio.get_running_loop()
            start, count = loop.time(), len(answer.tokens)
            step = self.delay_s / count
            sent = 0
            while sent < count:
                wait = start + (sent + 1) * step - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                elapsed = loop.time() - start
                due = count if step == 0 else min(count, max(sent + 1, math.floor(elapsed / step)))
                _write_chunk(writer, b"".join(answer.tokens[sent:due]))
                await writer.drain()
                sent = due
            tail = [answer.finish, *([answer.usage] if usage else []), answer.done]
            _write_chunk(writer, b"".join(tail))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            self.in_flight -= 1
        self.served += 1
        self.streamed += 1


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One chunk of a chunked transfer encoding."""
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def _stream_options(body: bytes) -> tuple[bool, bool]:
    """(stream, include_usage) of a chat request; only parsed when it can say stream."""
    if b'"stream"' not in body:
        return False, False
    request = json.loads(body)
    options = request.get("stream_options")
    usage = isinstance(options, dict) and options.get("include_usage") is True
    return request.get("stream") is True, usage


async def main(port: int, delay_s: float, tokens: int | None) -> None:
    upstream = Upstream(delay_s, tokens)
    # The default backlog (100) would drop SYNs when a worker opens 1,000 connections at once.
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    tokens = int(sys.argv[3]) if len(sys.argv) > 3 else None
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), tokens))
