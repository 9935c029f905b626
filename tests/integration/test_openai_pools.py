"""The OpenAI backend's connection pool (an aiohttp session, made on first use): max_concurrency
calls run at once and no more, whatever happens to them; connections are kept alive and
reused; a call is bounded as a whole by timeout_s; the session closes cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import aclosing

import pytest

from chatq.backends.base import TransientError
from chatq.backends.openai import OpenAIBackend
from chatq.config import BackendConfig
from tests.fakes.upstream import FakeUpstream, Reply, unused_port
from tests.waiting import eventually_async

CONCURRENCY = 10
REQUEST = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}


def backend(base_url: str, timeout_s: float = 5.0) -> OpenAIBackend:
    config = BackendConfig(
        name="up",
        type="openai",
        models=("up",),
        base_url=base_url,
        max_concurrency=CONCURRENCY,
        timeout_s=timeout_s,
    )
    return OpenAIBackend(config)


def saying(content: str) -> dict[str, object]:
    return {**REQUEST, "messages": [{"role": "user", "content": content}]}


async def all_at_once(upstream: FakeUpstream, backend: OpenAIBackend, calls: int) -> int:
    """Peak of calls in flight at the upstream while `calls` slow calls run together."""
    # Calls given up on earlier may still be sleeping at the upstream.
    await in_flight(upstream, 0, "the upstream to finish earlier calls")
    upstream.reset_peak()
    upstream.rule("slow", Reply(delay_s=0.3))
    await asyncio.gather(*(backend.run(str(i), saying("slow")) for i in range(calls)))
    upstream.rule("slow", None)
    return upstream.peak_in_flight


async def in_flight(upstream: FakeUpstream, calls: int, what: str) -> None:
    """Wait until exactly `calls` calls are in flight at the upstream."""

    async def now() -> int:
        return upstream.in_flight

    await eventually_async(now, lambda n: n == calls, what=what, timeout=5)


async def test_max_concurrency_calls_run_at_once(upstream: FakeUpstream) -> None:
    async with aclosing(backend(upstream.base_url)) as chatq:
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY
        # The cap still holds with more callers than slots.
        assert await all_at_once(upstream, chatq, 3 * CONCURRENCY) == CONCURRENCY


async def test_connections_are_kept_alive_and_reused(upstream: FakeUpstream) -> None:
    async with aclosing(backend(upstream.base_url)) as chatq:
        # The first wave comes before the session exists: all its calls must share one, or
        # the next waves would open new connections.
        await all_at_once(upstream, chatq, CONCURRENCY)
        await all_at_once(upstream, chatq, 3 * CONCURRENCY)
        for i in range(3):
            await chatq.run(str(i), REQUEST)
        assert len(upstream.client_ports) == 4 * CONCURRENCY + 3
        assert len(set(upstream.client_ports)) == CONCURRENCY


@pytest.mark.parametrize(
    "fault",
    [Reply(500, raw_body="boom"), Reply(reset_after=5), Reply(delay_s=1.0)],
    ids=["500", "reset mid-body", "timeout"],
)
async def test_failed_calls_give_their_connection_slot_back(
    upstream: FakeUpstream, fault: Reply
) -> None:
    async with aclosing(backend(upstream.base_url, timeout_s=0.5)) as chatq:
        upstream.rule("fault", fault)
        outcomes = await asyncio.gather(
            *(chatq.run(str(i), saying("fault")) for i in range(2 * CONCURRENCY)),
            return_exceptions=True,
        )
        assert all(isinstance(o, TransientError) for o in outcomes), outcomes
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY


async def test_a_cancelled_call_gives_its_connection_slot_back(upstream: FakeUpstream) -> None:
    async with aclosing(backend(upstream.base_url)) as chatq:
        upstream.rule("hang", Reply(delay_s=1.5))
        calls = [asyncio.create_task(chatq.run(str(i), saying("hang"))) for i in range(CONCURRENCY)]
        await in_flight(upstream, CONCURRENCY, "every call to hang at the upstream")
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY


async def test_timeout_s_bounds_the_whole_call_not_each_read(upstream: FakeUpstream) -> None:
    async with aclosing(backend(upstream.base_url, timeout_s=0.5)) as chatq:
        # A byte every few ms: no single read waits long, the whole body takes 3 s.
        upstream.script(Reply(drip_s=3.0))
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"no complete answer within 0\.5s"):
            await chatq.run("r1", REQUEST)
        assert time.monotonic() - started < 1.5


async def test_redirects_are_not_followed(upstream: FakeUpstream) -> None:
    async with aclosing(backend(upstream.base_url)) as chatq:
        upstream.script(Reply(307, raw_body="", headers={"Location": upstream.base_url}))
        with pytest.raises(TransientError, match="HTTP 307 with a body that is not JSON"):
            await chatq.run("r1", REQUEST)
        assert upstream.call_count() == 1


async def test_the_proxy_named_by_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_lines: list[bytes] = []
    answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": "proxied"}}]})

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        assert length is not None
        await reader.readexactly(int(length[1]))
        request_lines.append(head.split(b"\r\n", 1)[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer.encode())
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{port}")  # httpx's default scheme: http
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with aclosing(backend("http://upstream.invalid/v1")) as chatq:
            response = await chatq.run("r1", REQUEST)
    assert response["choices"][0]["message"]["content"] == "proxied"
    assert request_lines == [b"POST http://upstream.invalid/v1/chat/completions HTTP/1.1"]


async def test_no_proxy_is_honoured(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = unused_port()  # a proxy port nothing listens on
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with aclosing(backend(upstream.base_url)) as chatq:
        response = await chatq.run("r1", REQUEST)
        assert response["choices"][0]["message"]["content"] == "upstream: hi"


def test_built_outside_an_event_loop_then_used_and_closed_in_one(upstream: FakeUpstream) -> None:
    chatq = backend(upstream.base_url)  # as BackendPool.build does, before asyncio.run

    async def use() -> str:
        try:
            response = await chatq.run("r1", REQUEST)
            return str(response["choices"][0]["message"]["content"])
        finally:
            await chatq.aclose()

    assert asyncio.run(use()) == "upstream: hi"


async def test_a_backend_never_used_closes_and_a_closed_one_refuses_calls(
    upstream: FakeUpstream,
) -> None:
    chatq = backend(upstream.base_url)
    await chatq.aclose()
    await chatq.aclose()
    with pytest.raises(RuntimeError, match="used after aclose"):
        await chatq.run("r1", REQUEST)
    assert upstream.call_count() == 0
