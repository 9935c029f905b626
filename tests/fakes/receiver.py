"""A webhook receiver on 127.0.0.1, run in a thread of the test process (aiohttp's server).

It records every POST as it arrives (path, headers, body, the status it answers) and
answers 200 unless told
otherwise, per path: scripted statuses used once each, a share of random 500s, a latency,
or hanging.
It can be taken down (the port refuses connections) and brought up again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.upstream import unused_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int  # what the receiver answered; 0 for one it held (its client may be gone)

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class _Behaviour:
    script: deque[int]
    fail_ratio: float = 0.0
    hang_s: float = 0.0
    latency_s: float = 0.0


class Receiver:
    def __init__(self, seed: int = 13) -> None:
        self.received: list[Received] = []
        self.hanging = 0  # requests being held right now
        self._rand = random.Random(seed)
        self._paths: dict[str, _Behaviour] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._release = asyncio.Event()

    # ---- setup

    def start(self) -> Receiver:
        self._thread.start()
        self._call(self._up())
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._release.set)
        self._call(self._down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def down(self) -> None:
        """Stop listening: connections are refused until up()."""
        self._call(self._down())

    def up(self) -> None:
        self._call(self._up())

    # ---- behaviour, per path

    def script(self, path: str, *statuses: int) -> None:
        """Answer the next POSTs to path with these statuses, one each, then 200."""
        with self._lock:
            self._behaviour(path).script.extend(statuses)

    def flaky(self, path: str, fail_ratio: float) -> None:
        """Answer 500 to this share of POSTs to path, at random (seeded)."""
        with self._lock:
            self._behaviour(path).fail_ratio = fail_ratio

    def slow(self, path: str, seconds: float) -> None:
        """Take this long to answer POSTs to path (recorded with the status they get)."""
        with self._lock:
            self._behaviour(path).latency_s = seconds

    def hang(self, path: str, seconds: float) -> None:
        """Hold POSTs to path this long (or until stop) before answering."""
        with self._lock:
            self._behaviour(path).hang_s = seconds

    def release(self) -> None:
        """Answer every POST being held now, and hold none from now on."""
        with self._lock:
            for behaviour in self._paths.values():
                behaviour.hang_s = 0.0
        self._loop.call_soon_threadsafe(self._release.set)

    # ---- what was received

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def _behaviour(self, path: str) -> _Behaviour:
        return self._paths.setdefault(path, _Behaviour(deque()))

    # ---- the server, in its thread

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _up(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        self.port = self.port or unused_port()  # kept, so up() after down() reuses it
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self._runner = runner

    async def _down(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        with self._lock:
            behaviour = self._behaviour(path)
            status = behaviour.script.popleft() if behaviour.script else 200
            if status == 200 and self._rand.random() < behaviour.fail_ratio:
                status = 500
            hang_s = behaviour.hang_s
            latency_s = behaviour.latency_s
            held = 0 if hang_s else status
            self.received.append(
                Received(path, {k.lower(): v for k, v in request.headers.items()}, body, held)
            )
        if hang_s:
            self.hanging += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), hang_s)
            finally:
                self.hanging -= 1
        if latency_s:
            await asyncio.sleep(latency_s)
        return web.Response(status=status)


@contextmanager
def receiving(seed: int = 13) -> Iterator[Receiver]:
    receiver = Receiver(seed).start()
    try:
        yield receiver
    finally:
        receiver.stop()
