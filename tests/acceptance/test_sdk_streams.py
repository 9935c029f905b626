"""Issue 12 through the official SDKs, unchanged: the sync route (`chat.completions.create`
of perplexityai and of openai, streaming or not) and the async API's new verbs through
perplexityai's own methods, extra_query, extra_headers and its raw client.post/get/delete.
The sync route's disconnects are shown with raw httpx (an SDK cannot be told to hang up)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import perplexity
import pytest
from httpx_sse import connect_sse
from openai import OpenAI
from perplexity import Perplexity, Stream
from perplexity.generated.api import (
    AsyncApiChatCompletionsResponseOutput,
    ListAsyncApiChatCompletionsResponseOutput,
)

from tests.acceptance.conftest import PATH
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer, create_key

Completion = AsyncApiChatCompletionsResponseOutput
Listed = ListAsyncApiChatCompletionsResponseOutput
SONAR = "/v1/async/sonar"


@pytest.fixture(scope="module")
def key(server: ChatqServer) -> str:
    """One owner for the module (a key costs a `chatq keys create`); the tests that list
    what an owner has use `fresh`."""
    return create_key(server.database, "sdk-streams", owner="sdk-streams")


@pytest.fixture
def fresh(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    """Plain HTTP as a fresh owner, who has made no request yet."""
    with server.client(new_key()) as client:
        yield client


@pytest.fixture
def pplx(server: ChatqServer, key: str) -> Iterator[Perplexity]:
    # Strict validation: every response (each streamed chunk too) parses under the SDK's models.
    with Perplexity(
        api_key=key, base_url=server.base_url, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


@pytest.fixture
def oai(server: ChatqServer, key: str) -> Iterator[OpenAI]:
    with OpenAI(
        api_key=key,
        base_url=f"{server.base_url}/v1",
        max_retries=0,
        _strict_response_validation=True,
    ) as client:
        yield client


@pytest.fixture
def raw(server: ChatqServer, key: str) -> Iterator[httpx.Client]:
    """Plain HTTP, as the same owner as the SDK clients."""
    with server.client(key) as client:
        yield client


def unique(words: str) -> str:
    return f"{words} {uuid.uuid4().hex[:8]}"


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def answer_of(content: str) -> str:
    return f"upstream: {content}"


def stored(raw: httpx.Client, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = raw.get(f"{PATH}/{request_id}", params={"wait": 20}).json()
    return body


# ---- the sync route: perplexityai


def test_perplexity_sync_create(pplx: Perplexity, raw: httpx.Client) -> None:
    content = unique("sync through perplexityai")
    made = pplx.chat.completions.with_raw_response.create(
        model="sonar", messages=user(content), max_tokens=30
    )
    completion = made.parse()
    assert completion.choices[0].message.content == answer_of(content)
    assert completion.usage is not None and completion.usage.total_tokens == 10
    # The stored request behind it, named by the header.
    got = stored(raw, made.headers["x-request-id"])
    assert got["status"] == "COMPLETED"
    assert got["response"] == completion.model_dump(mode="json", exclude_unset=True)


def test_perplexity_sync_stream(
    pplx: Perplexity, raw: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("streamed through perplexityai, in many pieces")
    module_upstream.rule(content, Reply(token_delay_s=0.02, pieces=30))
    made = pplx.chat.completions.with_raw_response.create(
        model="sonar", messages=user(content), stream=True
    )
    chunks = list(made.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_of(content)
    assert len(chunks) > 2, "the text arrives in pieces"
    # As Perplexity streams by default: each chunk also holds the message so far.
    so_far = ""
    for chunk in chunks:
        so_far += chunk.choices[0].delta.content or ""
        assert chunk.choices[0].delta.role == "assistant"
        assert chunk.choices[0].message.content == so_far
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None and last.usage.total_tokens == 10
    got = stored(raw, made.headers["x-request-id"])
    assert got["status"] == "COMPLETED"
    assert got["response"]["choices"][0]["message"]["content"] == text


def test_perplexity_sync_failures(pplx: Perplexity, module_upstream: FakeUpstream) -> None:
    content = unique("refused upstream")
    module_upstream.rule(content, Reply(400, {"error": {"message": "no such thing"}}))
    with pytest.raises(perplexity.APIStatusError) as failed:
        pplx.chat.completions.create(model="fake-model", messages=user(content))
    assert failed.value.status_code == 502
    body = failed.value.response.json()
    assert body["error"]["type"] == "request_failed"
    assert body["error"]["code"] == 502
    assert "HTTP 400" in body["error"]["message"] and "no such thing" in body["error"]["message"]
    # Streaming, the failure is an error event, which the SDK raises.
    stream = pplx.chat.completions.create(model="fake-model", messages=user(content), stream=True)
    with pytest.raises(perplexity.APIStatusError) as streamed:
        list(stream)
    assert "request_failed" in str(streamed.value) and "no such thing" in str(streamed.value)


# ---- the sync route: openai


def test_openai_sync_create(oai: OpenAI, raw: httpx.Client) -> None:
    content = unique("sync through openai")
    made = oai.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": content}]
    )
    completion = made.parse()
    assert completion.choices[0].message.content == answer_of(content)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    got = stored(raw, made.headers["x-request-id"])
    assert got["status"] == "COMPLETED"
    assert got["response"]["choices"][0]["message"]["content"] == answer_of(content)


def test_openai_sync_stream(oai: OpenAI, raw: httpx.Client, module_upstream: FakeUpstream) -> None:
    content = unique("streamed through openai, in many pieces")
    module_upstream.rule(content, Reply(token_delay_s=0.02, pieces=30))
    made = oai.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": content}], stream=True
    )
    chunks = list(made.parse())
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert not any("message" in (c.choices[0].model_extra or {}) for c in chunks), "OpenAI's"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_of(content)
    assert len(chunks) > 2, "the text arrives in pieces"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 10
    request_id = made.headers["x-request-id"]
    assert {c.id for c in chunks} == {request_id}
    assert stored(raw, request_id)["status"] == "COMPLETED"


def test_openai_sync_failures(oai: OpenAI, module_upstream: FakeUpstream) -> None:
    content = unique("refused upstream")
    module_upstream.rule(content, Reply(400, {"error": {"message": "no such thing"}}))
    messages: Any = [{"role": "user", "content": content}]
    with pytest.raises(openai.APIStatusError) as failed:
        oai.chat.completions.create(model="fake-model", messages=messages)
    assert failed.value.status_code == 502
    assert failed.value.response.json()["error"]["type"] == "request_failed"
    # Streaming, the failure is an error event, which the SDK raises.
    with pytest.raises(openai.APIError) as streamed:
        list(oai.chat.completions.create(model="fake-model", messages=messages, stream=True))
    assert "no such thing" in str(streamed.value)


# ---- the sync route: a client that goes away does not cancel the request


def test_a_client_leaving_a_sync_call_does_not_cancel_it(
    fresh: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("nobody waits for me")
    module_upstream.rule(content, Reply(delay_s=1.5))
    with pytest.raises(httpx.ReadTimeout):
        fresh.post(
            "/chat/completions",
            json={"model": "fake-model", "messages": user(content)},
            timeout=0.5,
        )
    # The answer never came, nor its X-Request-Id: the owner's list names the request.
    (listed,) = fresh.get(PATH).json()["requests"]
    got = stored(fresh, listed["id"])
    assert got["status"] == "COMPLETED"
    assert got["response"]["choices"][0]["message"]["content"] == answer_of(content)


def test_a_client_leaving_a_streamed_sync_call_does_not_cancel_it(
    raw: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("nobody reads me to the end, " * 3)
    module_upstream.rule(content, Reply(token_delay_s=0.03, pieces=40))
    body = {"model": "fake-model", "messages": user(content), "stream": True}
    with connect_sse(raw, "POST", "/v1/chat/completions", json=body) as source:
        request_id = source.response.headers["x-request-id"]
        first = next(source.iter_sse())
        assert first.json()["choices"][0]["delta"]["role"] == "assistant"
    got = stored(raw, request_id)
    assert got["status"] == "COMPLETED"
    assert got["response"]["choices"][0]["message"]["content"] == answer_of(content)
    calls = [
        i for i, c in enumerate(module_upstream.calls) if c["messages"][-1]["content"] == content
    ]
    assert len(calls) == 1 and calls[0] not in module_upstream.disconnects


# ---- the async API through perplexityai


def test_async_create_with_stream_then_get_with_wait(pplx: Perplexity) -> None:
    content = unique("async, streamed")
    created = pplx.async_.chat.completions.create(
        request={"model": "fake-model", "messages": user(content), "stream": True}
    )
    assert created.status == "CREATED"
    done = pplx.async_.chat.completions.get(created.id, extra_query={"wait": 10})
    assert done.status == "COMPLETED", done.error_message
    assert done.response is not None
    assert done.response.choices[0].message.content == answer_of(content)


def test_async_create_with_prefer_wait(pplx: Perplexity) -> None:
    request = {"model": "echo", "messages": user("preferred")}
    done = pplx.async_.chat.completions.create(request=request, extra_headers={"Prefer": "wait=10"})
    assert done.status == "COMPLETED"
    assert done.response is not None and done.response.choices[0].message.content == "preferred"
    made = pplx.async_.chat.completions.with_raw_response.create(
        request=request, extra_headers={"Prefer": "wait=10"}
    )
    assert made.headers["preference-applied"] == "wait=10"
    assert made.parse().status == "COMPLETED"


def test_async_cancel_and_delete_through_the_raw_client(
    pplx: Perplexity, module_upstream: FakeUpstream
) -> None:
    content = unique("cancel me through the sdk")
    # Streamed: the fake upstream sees the cancelled call leave, and is not kept busy 30 s.
    module_upstream.rule(content, Reply(delay_s=30))
    created = pplx.async_.chat.completions.create(
        request={"model": "fake-model", "messages": user(content), "stream": True}
    )
    # Unfinished: delete is refused.
    with pytest.raises(perplexity.ConflictError):
        pplx.delete(f"{PATH}/{created.id}", cast_to=type(None))
    cancelled = pplx.post(f"{PATH}/{created.id}/cancel", cast_to=Completion)
    assert cancelled.id == created.id and cancelled.status in ("CREATED", "IN_PROGRESS", "FAILED")
    failed = pplx.async_.chat.completions.get(created.id, extra_query={"wait": 20})
    assert failed.status == "FAILED"
    assert failed.error_message == "cancelled by the client"
    # Cancel of a finished request: unchanged.
    assert pplx.post(f"{SONAR}/{created.id}/cancel", cast_to=Completion) == failed
    assert pplx.delete(f"{SONAR}/{created.id}", cast_to=type(None)) is None
    with pytest.raises(perplexity.NotFoundError):
        pplx.async_.chat.completions.get(created.id)
    with pytest.raises(perplexity.NotFoundError):
        pplx.post(f"{PATH}/{created.id}/cancel", cast_to=Completion)


def test_async_flat_body_and_sonar_paths_through_the_raw_client(pplx: Perplexity) -> None:
    # create() always wraps its argument in "request" (extra_body adds keys beside it), so
    # the flat body goes through client.post; so do the /v1/async/sonar paths.
    flat = {"model": "echo", "messages": user("flat via the sdk")}
    created = pplx.post(SONAR, body=flat, cast_to=Completion)
    assert created.status == "CREATED"
    got = pplx.get(f"{SONAR}/{created.id}", cast_to=Completion, options={"params": {"wait": 10}})
    assert got.status == "COMPLETED"
    assert (
        got.response is not None and got.response.choices[0].message.content == "flat via the sdk"
    )
    assert pplx.async_.chat.completions.get(created.id) == got
    assert created.id in [r.id for r in pplx.get(SONAR, cast_to=Listed).requests]


def test_async_events_through_the_raw_client(pplx: Perplexity) -> None:
    """The SDK's Stream reads the event stream, but yields only each event's data: the
    event names and ids (so Last-Event-ID) are out of its reach."""
    created = pplx.async_.chat.completions.create(
        request={"model": "echo", "messages": user("three little words"), "stream": True},
        extra_headers={"Prefer": "wait=10"},
    )
    events = pplx.get(
        f"{PATH}/{created.id}/events",
        cast_to=object,
        stream=True,
        stream_cls=Stream[object],
    )
    data: list[Any] = list(events)
    text = "".join(d["content"] for d in data if set(d) == {"content"})
    assert text == "three little words"
    assert data[-1]["status"] == "COMPLETED"
    assert Completion.model_validate(data[-1]) == created


def test_the_sync_routes_store_their_requests_like_any_other(fresh: httpx.Client) -> None:
    """Both sync paths store their requests like any other: listed, fetchable, with the
    model as submitted."""
    before = time.time() - 1
    ids = []
    for path in ("/chat/completions", "/v1/chat/completions"):
        response = fresh.post(path, json={"model": "echo", "messages": user(path)})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == path
        ids.append(response.headers["x-request-id"])
    listed = fresh.get(PATH).json()["requests"]
    assert [r["id"] for r in listed] == ids[::-1]
    assert [r["status"] for r in listed] == ["COMPLETED", "COMPLETED"]
    assert all(r["model"] == "echo" and r["created_at"] >= before for r in listed)
