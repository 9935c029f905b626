"""The OpenAI backend's connection pool (an aiohttp session, made on first use): max_concurrency
calls run at once and no more, whatever happens to them."""

from __future__ import annotations

import asyncio

import pytest

from chatq.backends.base import TransientError
from chatq.backends.openai import OpenAIBackend
from chatq.config import BackendConfig
from tests.fakes.upstream import FakeUpstream, Reply

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
    for _ in range(100):  # calls given up on earlier are still sleeping at the upstream
        if upstream.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    upstream.reset_peak()
    upstream.rule("slow", Reply(delay_s=0.3))
    await asyncio.gather(*(backend.complete(str(i), saying("slow")) for i in range(calls)))
    upstream.rule("slow", None)
    return upstream.peak_in_flight


async def test_max_concurrency_calls_run_at_once(upstream: FakeUpstream) -> None:
    chatq = backend(upstream.base_url)
    try:
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY
        # The cap still holds with more callers than slots.
        assert await all_at_once(upstream, chatq, 3 * CONCURRENCY) == CONCURRENCY
    finally:
        await chatq.aclose()


@pytest.mark.parametrize(
    "fault",
    [Reply(500, raw_body="boom"), Reply(reset_after=5), Reply(delay_s=1.0)],
    ids=["500", "reset mid-body", "timeout"],
)
async def test_failed_calls_give_their_connection_slot_back(
    upstream: FakeUpstream, fault: Reply
) -> None:
    chatq = backend(upstream.base_url, timeout_s=0.5)
    try:
        upstream.rule("fault", fault)
        outcomes = await asyncio.gather(
            *(chatq.complete(str(i), saying("fault")) for i in range(2 * CONCURRENCY)),
            return_exceptions=True,
        )
        assert all(isinstance(o, TransientError) for o in outcomes), outcomes
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY
    finally:
        await chatq.aclose()


async def test_a_cancelled_call_gives_its_connection_slot_back(upstream: FakeUpstream) -> None:
    chatq = backend(upstream.base_url)
    try:
        upstream.rule("hang", Reply(delay_s=1.5))
        calls = [
            asyncio.create_task(chatq.complete(str(i), saying("hang"))) for i in range(CONCURRENCY)
        ]
        await asyncio.sleep(0.3)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY
    finally:
        await chatq.aclose()
