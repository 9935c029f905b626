"""The OpenAI backend splits its connections into small pools (httpcore's one big pool costs
O(n^2) per request): max_concurrency calls still run at once, whatever happens to them."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from chatq.backends.base import TransientError
from chatq.backends.openai import OpenAIBackend
from chatq.config import BackendConfig
from tests.fakes.upstream import FakeUpstream, Reply

CONCURRENCY = 10  # more than one pool's worth
REQUEST = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}


def backend(upstream: FakeUpstream, timeout_s: float = 5.0) -> OpenAIBackend:
    config = BackendConfig(
        name="up",
        type="openai",
        models=("up",),
        base_url=upstream.base_url,
        max_concurrency=CONCURRENCY,
        timeout_s=timeout_s,
    )
    return OpenAIBackend(config)


async def all_at_once(upstream: FakeUpstream, backend: OpenAIBackend, calls: int) -> int:
    """Peak of calls in flight at the upstream while `calls` slow calls run together."""
    for _ in range(100):  # calls given up on earlier are still sleeping at the upstream
        if upstream.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    upstream.reset_peak()
    upstream.rule("slow", Reply(delay_s=0.3))
    request = {**REQUEST, "messages": [{"role": "user", "content": "slow"}]}
    await asyncio.gather(*(backend.complete(str(i), request) for i in range(calls)))
    upstream.rule("slow", None)
    return upstream.peak_in_flight


async def test_max_concurrency_calls_run_at_once(upstream: FakeUpstream) -> None:
    chatq = backend(upstream)
    try:
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY
        # Warm connections are reused, and the cap still holds with more callers than slots.
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
    chatq = backend(upstream, timeout_s=0.5)
    try:
        upstream.rule("fault", fault)
        request = {**REQUEST, "messages": [{"role": "user", "content": "fault"}]}
        outcomes = await asyncio.gather(
            *(chatq.complete(str(i), request) for i in range(2 * CONCURRENCY)),
            return_exceptions=True,
        )
        assert all(isinstance(o, TransientError) for o in outcomes), outcomes
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY
    finally:
        await chatq.aclose()


async def test_a_cancelled_call_gives_its_connection_slot_back(upstream: FakeUpstream) -> None:
    chatq = backend(upstream)
    try:
        upstream.rule("hang", Reply(delay_s=1.5))
        request = {**REQUEST, "messages": [{"role": "user", "content": "hang"}]}
        calls = [asyncio.create_task(chatq.complete(str(i), request)) for i in range(CONCURRENCY)]
        await asyncio.sleep(0.3)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert await all_at_once(upstream, chatq, CONCURRENCY) == CONCURRENCY
    finally:
        await chatq.aclose()


async def test_an_injected_transport_is_used_as_is() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"choices": [{"message": {"role": "assistant", "content": "mock"}}]}
        )

    config = BackendConfig(name="m", type="openai", models=("m",), base_url="http://mock/v1")
    chatq = OpenAIBackend(config, transport=httpx.MockTransport(answer))
    try:
        response = await chatq.complete("r1", {"model": "m", "messages": []})
        assert response["choices"][0]["message"]["content"] == "mock"
    finally:
        await chatq.aclose()
