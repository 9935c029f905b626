"""The OpenAI backend streaming from the fake upstream over real HTTP: the text arrives piece by
piece and the pieces make the stored answer; every field the upstream streams is kept; faults
before and during the stream map to the same errors as without streaming; and a cancelled
call closes its connection, which the upstream sees."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatq.backends.base import PermanentError, TransientError
from chatq.backends.openai import OpenAIBackend
from chatq.config import BackendConfig
from chatq.domain import JSON
from tests.fakes.upstream import FakeUpstream, Reply

REQUEST: JSON = {"model": "up", "messages": [{"role": "user", "content": "tell me a story"}]}
STORY = "upstream: tell me a story"


@pytest.fixture
async def chatq(upstream: FakeUpstream) -> AsyncIterator[OpenAIBackend]:
    backend = make(upstream.base_url)
    try:
        yield backend
    finally:
        await backend.aclose()


def make(base_url: str, timeout_s: float = 10.0) -> OpenAIBackend:
    return OpenAIBackend(
        BackendConfig(
            name="up",
            type="openai",
            models=("up",),
            base_url=base_url,
            max_concurrency=4,
            timeout_s=timeout_s,
        )
    )


def content(response: JSON) -> str:
    text: str = response["choices"][0]["message"]["content"]
    return text


async def streamed(backend: OpenAIBackend, request: JSON = REQUEST) -> tuple[JSON, list[str]]:
    pieces: list[str] = []
    response = await backend.run("r1", request, pieces.append)
    return response, pieces


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    """One chat.completion.chunk event, as a provider writes it."""
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "up",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


async def until(condition: Any, within_s: float = 1.0) -> bool:
    """Poll condition() for up to within_s seconds (a bound on correctness, not a speed test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_pieces_arrive_in_order_and_make_the_answer(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    response, pieces = await streamed(chatq)
    assert pieces == ["upstream: ", "tell ", "me ", "a ", "story"]
    assert content(response) == "".join(pieces) == STORY
    choice = response["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["delta"] == choice["message"], "normalized for the SDK as without streaming"
    assert choice["finish_reason"] == "stop"
    assert response["object"] == "chat.completion"
    assert response["id"] == "up-1" and response["model"] == "up"
    usage = response["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (7, 3, 10)
    assert usage["cost"]["total_cost"] == 0.0
    (sent,) = upstream.calls
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert upstream.headers[0]["accept"] == "text/event-stream"


async def test_the_request_is_unchanged_without_a_sink(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    response = await chatq.run("r1", {**REQUEST, "stream": True})
    assert content(response) == STORY
    (sent,) = upstream.calls
    assert sent == REQUEST, "the client's stream field is never forwarded"


async def test_the_clients_own_stream_field_does_not_decide(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    request = {**REQUEST, "stream": False, "stream_options": {"other": 1}}
    response, pieces = await streamed(chatq, request)
    assert content(response) == "".join(pieces) == STORY
    assert upstream.calls[0]["stream"] is True
    assert upstream.calls[0]["stream_options"] == {"include_usage": True}
    await chatq.run("r2", {**REQUEST, "stream": True, "stream_options": {"include_usage": True}})
    assert upstream.calls[1] == REQUEST, "a provider refuses stream_options without stream"


async def test_every_field_the_upstream_streams_is_kept(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    whole = {
        "id": "pplx-42",
        "model": "sonar-pro",
        "created": 1700000000,
        "citations": ["https://example.org/a", "https://example.org/b"],
        "search_results": [{"title": "A", "url": "https://example.org/a", "date": None}],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is blue [1]."}}],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 5,
            "total_tokens": 16,
            "search_context_size": "low",
            "cost": {"input_tokens_cost": 0.1, "output_tokens_cost": 0.2, "total_cost": 0.3},
        },
    }
    upstream.script(Reply(json_body=whole, pieces=3))
    response, pieces = await streamed(chatq)
    assert len(pieces) == 3 and "".join(pieces) == content(response) == "It is blue [1]."
    assert response["id"] == "pplx-42" and response["model"] == "sonar-pro"
    assert response["created"] == 1700000000
    assert response["citations"] == whole["citations"]
    assert response["search_results"] == whole["search_results"]
    assert response["usage"] == whole["usage"]


async def test_text_fields_other_than_content_are_assembled_too(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    reply = Reply(
        events=[
            chunk({"role": "assistant", "reasoning_content": "Think"}),
            chunk({"reasoning_content": "ing."}),
            chunk({"content": "Done"}),
            chunk({}, finish="length"),
            "data: [DONE]\n\n",
        ]
    )
    upstream.script(reply)
    response, pieces = await streamed(chatq)
    assert pieces == ["Done"], "only the content goes to the sink"
    message = response["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Done", "reasoning_content": "Thinking."}
    assert response["choices"][0]["finish_reason"] == "length"
    assert response["usage"]["total_tokens"] == 0, "no usage chunk: zeros, as without streaming"


async def test_the_sse_framing_of_the_spec_is_understood(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    # One JSON object over several data lines, which the reader joins with LF.
    first = json.dumps({"choices": [{"index": 0, "delta": {"content": "multi"}}]}, indent=1)
    reply = Reply(
        events=[
            ": a comment, as keep-alives are\r\n\r\n",
            "event: message\r\nid: 1\r\n"
            + "".join(f"data: {line}\r\n" for line in first.splitlines())
            + "\r\n",
            chunk({"content": "-line"}).replace("\n", "\r"),
            chunk({}, finish="stop"),
            "data: [DONE]\n\n",
        ]
    )
    upstream.script(reply)
    response, pieces = await streamed(chatq)
    assert pieces == ["multi", "-line"] and content(response) == "multi-line"


async def test_an_upstream_that_ignores_stream_gives_one_piece(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    whole = {"choices": [{"message": {"role": "assistant", "content": "all at once"}}]}
    upstream.script(Reply(raw_body=json.dumps(whole)))
    response, pieces = await streamed(chatq)
    assert pieces == ["all at once"] and content(response) == "all at once"


async def test_eof_after_the_finish_reason_without_done_is_an_answer(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    upstream.script(Reply(events=[chunk({"content": "short"}), chunk({}, finish="stop")]))
    response, pieces = await streamed(chatq)
    assert pieces == ["short"] and content(response) == "short"


async def test_connections_are_kept_alive_between_streams(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    for _ in range(3):
        await streamed(chatq)
    await chatq.run("plain", REQUEST)
    assert len(set(upstream.client_ports)) == 1, upstream.client_ports
    assert upstream.disconnects == [], "every stream was read to its end"


# Faults before the stream starts: the same errors as without streaming.
BEFORE: dict[str, tuple[Reply, type[Exception], str]] = {
    "429": (
        Reply(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "7"}),
        TransientError,
        "HTTP 429: rate limited",
    ),
    "503 html": (Reply(503, raw_body="<h1>down</h1>"), TransientError, "HTTP 503"),
    "408": (Reply(408, {"error": {"message": "slow"}}), TransientError, "HTTP 408: slow"),
    "400": (Reply(400, {"error": {"message": "bad model"}}), PermanentError, "HTTP 400: bad model"),
    "401": (Reply(401, {"detail": "bad key"}), PermanentError, "HTTP 401: bad key"),
    "200 not JSON": (Reply(raw_body="<html>"), TransientError, "not JSON"),
}


@pytest.mark.parametrize("fault", BEFORE, ids=list(BEFORE))
async def test_faults_before_the_stream(
    upstream: FakeUpstream, chatq: OpenAIBackend, fault: str
) -> None:
    reply, error, message = BEFORE[fault]
    upstream.script(reply)
    pieces: list[str] = []
    with pytest.raises(error, match=message) as raised:
        await chatq.run("r1", REQUEST, pieces.append)
    assert pieces == []
    if fault == "429":
        assert isinstance(raised.value, TransientError) and raised.value.retry_after == 7.0


# Faults mid-stream: transient, naming what happened, after the pieces sent before them.
DURING: dict[str, tuple[Reply, str, int]] = {
    "connection cut": (Reply(cut_after=2), r"stream broke off after 3 chunk\(s\)", 2),
    "malformed event": (
        Reply(malformed_after=1),
        r"malformed event after 2 chunk\(s\), not JSON: '\{\"choices\": \[tru'",
        1,
    ),
    "eof without done": (
        Reply(end_after=3),
        r"stream ended after 4 chunk\(s\), without \[DONE\] or a finish_reason",
        3,
    ),
    "eof mid-event": (
        Reply(events=[chunk({"content": "a"}), 'data: {"choices": []}\n']),
        r"ended in the middle of an event after 1 chunk\(s\)",
        1,
    ),
    "error event": (
        Reply(events=[chunk({"content": "a"}), 'data: {"error": {"message": "overloaded"}}\n\n']),
        r"error in the stream after 1 chunk\(s\): overloaded",
        1,
    ),
    "not an object": (Reply(events=["data: [1, 2]\n\n"]), "not a JSON object", 0),
    "no choices": (
        Reply(events=['data: {"id": "x", "choices": []}\n\n', "data: [DONE]\n\n"]),
        "malformed completion: upstream response has no choices",
        0,
    ),
}


@pytest.mark.parametrize("fault", DURING, ids=list(DURING))
async def test_faults_during_the_stream(
    upstream: FakeUpstream, chatq: OpenAIBackend, fault: str
) -> None:
    reply, message, sent = DURING[fault]
    upstream.script(reply)
    pieces: list[str] = []
    with pytest.raises(TransientError, match=message):
        await chatq.run("r1", REQUEST, pieces.append)
    assert len(pieces) == sent
    # The backend is fine afterwards, on a fresh connection where the old one broke.
    response, pieces = await streamed(chatq)
    assert content(response) == "".join(pieces) == STORY


async def test_timeout_s_bounds_the_whole_stream(upstream: FakeUpstream) -> None:
    backend = make(upstream.base_url, timeout_s=0.5)
    try:
        # Each piece comes quickly; the whole stream takes far longer than timeout_s.
        upstream.script(Reply(pieces=40, token_delay_s=0.05))
        pieces: list[str] = []
        with pytest.raises(TransientError, match=r"no complete answer within 0\.5s"):
            await backend.run("r1", REQUEST, pieces.append)
        assert 0 < len(pieces) < 40
        assert await until(lambda: upstream.disconnect_count() == 1)
    finally:
        await backend.aclose()


async def test_a_sink_that_raises_ends_the_call(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    upstream.script(Reply(token_delay_s=0.05))

    def refuse(piece: str) -> None:
        raise LookupError("no room for " + piece)

    with pytest.raises(LookupError, match="no room for upstream: "):
        await chatq.run("r1", REQUEST, refuse)
    assert await until(lambda: upstream.disconnect_count() == 1)


async def test_cancel_mid_stream_closes_the_upstream_connection(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    upstream.script(Reply(pieces=200, token_delay_s=0.05))
    pieces: list[str] = []
    call = asyncio.create_task(chatq.run("r1", REQUEST, pieces.append))
    assert await until(lambda: len(pieces) >= 2, within_s=10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await until(lambda: upstream.disconnect_count() == 1), "the upstream saw us go"
    assert upstream.disconnects == [0]
    received = len(pieces)
    await asyncio.sleep(0.2)
    assert len(pieces) == received, "no piece after the cancel"
    # The cancelled connection was not kept for reuse: the next call comes on a new one.
    await streamed(chatq)
    assert upstream.client_ports[1] != upstream.client_ports[0]


async def test_cancel_before_the_answer_starts_closes_the_connection(
    upstream: FakeUpstream, chatq: OpenAIBackend
) -> None:
    upstream.script(Reply(delay_s=30))
    call = asyncio.create_task(chatq.run("r1", REQUEST, lambda piece: None))
    assert await until(lambda: upstream.call_count() == 1, within_s=10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await until(lambda: upstream.disconnect_count() == 1), "the upstream saw us go"
    response, pieces = await streamed(chatq)
    assert content(response) == "".join(pieces) == STORY
