"""A slow OpenAI-compatible upstream for bench/long_jobs.py: every answer takes DELAY seconds.

Plain asyncio and HTTP/1.1 keep-alive, no framework, so that its own cost stays small next to
the worker it feeds on the same cores. POST /v1/chat/completions sleeps DELAY seconds, then
answers a valid chat.completion; GET /healthz answers at once; GET /stats gives the calls
served and the peak of calls in flight.

    python bench/slow_upstream.py PORT DELAY_S
"""

from __future__ import annotations

import asyncio
import json
import sys

ANSWER = json.dumps(
    {
        "id": "chatcmpl-slow",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "slow",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A slow and steady answer."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
    }
).encode()


class Upstream:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.in_flight = 0
        self.peak = 0
        self.served = 0

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
                if length:
                    await reader.readexactly(length)
                if method == "POST" and path.endswith("/chat/completions"):
                    body = await self._complete()
                elif path == "/stats":
                    body = json.dumps({"served": self.served, "peak": self.peak}).encode()
                else:
                    body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
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
        return ANSWER


async def main(port: int, delay_s: float) -> None:
    upstream = Upstream(delay_s)
    # The default backlog (100) would drop SYNs when a worker opens 1,000 connections at once.
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
