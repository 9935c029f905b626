"""The official perplexityai SDK, pointed at chatq with base_url=, works unchanged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import perplexity
import pytest
from perplexity import Perplexity
from perplexity.generated.api import AsyncApiChatCompletionsResponseOutput

from tests.acceptance.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer
from tests.waiting import eventually

Completion = AsyncApiChatCompletionsResponseOutput


@pytest.fixture
def client(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[Perplexity]:
    """An SDK client for a fresh owner."""
    # Strict validation: every response must parse under the SDK's own pydantic models.
    with Perplexity(
        api_key=new_key(), base_url=server.base_url, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


def poll(client: Perplexity, request_id: str, timeout: float = 20) -> Completion:
    """The request through the SDK's get, once it is COMPLETED or FAILED."""
    return eventually(
        lambda: client.async_.chat.completions.get(request_id, local_mode=False, x_client_name="t"),
        lambda got: got.status in ("COMPLETED", "FAILED"),
        what=f"request {request_id} to finish",
        timeout=timeout,
        show=lambda got: got.status,
    )


def test_create_get_until_completed_then_list(
    client: Perplexity, module_upstream: FakeUpstream
) -> None:
    request = {
        "model": "sonar-pro",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is chatq?"},
        ],
        "temperature": 0.3,
        "max_tokens": 64,
        "search_domain_filter": ["example.com"],
        "web_search_options": {"search_context_size": "low"},
    }
    created = client.async_.chat.completions.create(request=request)
    assert created.status == "CREATED"
    assert created.model == "sonar-pro"
    assert created.response is None and created.started_at is None
    assert abs(created.created_at - time.time()) < 60

    done = poll(client, created.id)
    assert done.status == "COMPLETED", done.error_message
    assert done.started_at is not None and done.completed_at is not None
    assert done.created_at <= done.started_at <= done.completed_at
    assert done.failed_at is None and done.error_message is None
    assert done.response is not None
    choice = done.response.choices[0]
    assert choice.message.content == "upstream: What is chatq?"
    # The upstream sent neither delta nor usage.cost; chatq fills both for the SDK.
    assert choice.delta.content == choice.message.content
    assert done.response.usage is not None
    assert done.response.usage.cost.total_cost == 0.0
    assert done.response.usage.total_tokens == 10

    # Every other field went to the upstream verbatim, with the model rewritten.
    sent = next(
        c for c in module_upstream.calls if c["messages"][-1]["content"] == "What is chatq?"
    )
    assert sent["model"] == "upstream-llama"
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 64
    assert sent["search_domain_filter"] == ["example.com"]
    assert sent["web_search_options"] == {"search_context_size": "low"}
    assert "stream" not in sent
    headers = module_upstream.headers[module_upstream.calls.index(sent)]
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

    listed = client.async_.chat.completions.list()
    assert [r.id for r in listed.requests] == [created.id]
    assert listed.requests[0].status == "COMPLETED"
    assert listed.next_token is None


def test_list_pages_through_extra_query(client: Perplexity) -> None:
    ids = [
        client.async_.chat.completions.create(
            request={"model": "echo", "messages": [{"role": "user", "content": f"n{i}"}]}
        ).id
        for i in range(7)
    ]
    seen: list[str] = []
    tokens: list[str | None] = []
    token: str | None = None
    for _ in range(10):
        query: dict[str, object] = {"limit": 3}
        if token is not None:
            query["next_token"] = token
        page = client.async_.chat.completions.list(extra_query=query)
        seen.extend(r.id for r in page.requests)
        tokens.append(page.next_token)
        token = page.next_token
        if token is None:
            break
    assert seen == list(reversed(ids)), "newest first, each exactly once"
    assert [t is None for t in tokens] == [False, False, True]


def test_idempotency_through_the_sdk(client: Perplexity) -> None:
    request = {"model": "echo", "messages": [{"role": "user", "content": "once"}]}
    first = client.async_.chat.completions.create(request=request, idempotency_key="job-1")
    again = client.async_.chat.completions.create(request=request, idempotency_key="job-1")
    assert again.id == first.id
    with pytest.raises(perplexity.ConflictError):
        client.async_.chat.completions.create(
            request={"model": "echo", "messages": [{"role": "user", "content": "other"}]},
            idempotency_key="job-1",
        )
    assert len(client.async_.chat.completions.list().requests) == 1


def test_upstream_failure_is_reported_through_the_sdk(
    client: Perplexity, module_upstream: FakeUpstream
) -> None:
    module_upstream.script(
        Reply(400, {"error": {"message": "max_tokens must be positive", "type": "bad_request"}})
    )
    created = client.async_.chat.completions.create(
        request={"model": "fake-model", "messages": [{"role": "user", "content": "bad"}]}
    )
    failed = poll(client, created.id)
    assert failed.status == "FAILED"
    assert failed.failed_at is not None and failed.completed_at is None
    assert failed.response is None
    assert failed.error_message is not None
    assert "HTTP 400" in failed.error_message
    assert "max_tokens must be positive" in failed.error_message


def test_transient_upstream_errors_are_retried(
    client: Perplexity, module_upstream: FakeUpstream
) -> None:
    before = module_upstream.call_count()
    module_upstream.script(
        Reply(503, raw_body="<html>overloaded</html>"),
        Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
    )
    created = client.async_.chat.completions.create(
        request={"model": "fake-model", "messages": [{"role": "user", "content": "retry me"}]}
    )
    done = poll(client, created.id)
    assert done.status == "COMPLETED", done.error_message
    assert done.response is not None
    assert done.response.choices[0].message.content == "upstream: retry me"
    assert module_upstream.call_count() - before == 3


def test_retries_exhausted_fail_with_the_cause(
    client: Perplexity, module_upstream: FakeUpstream
) -> None:
    module_upstream.script(*[Reply(502, raw_body="<html>bad gateway</html>")] * 3)
    created = client.async_.chat.completions.create(
        request={"model": "fake-model", "messages": [{"role": "user", "content": "doomed"}]}
    )
    failed = poll(client, created.id)
    assert failed.status == "FAILED"
    assert failed.error_message is not None
    assert "after 3 attempt(s)" in failed.error_message
    assert "HTTP 502" in failed.error_message


def test_the_local_model_answers_through_the_sdk(client: Perplexity) -> None:
    request = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 20,
        "temperature": 0,
        "seed": 42,
    }
    ids = [client.async_.chat.completions.create(request=request).id for _ in range(2)]
    done = [poll(client, i, timeout=60) for i in ids]
    assert [d.status for d in done] == ["COMPLETED", "COMPLETED"], [d.error_message for d in done]
    answers = []
    for d in done:
        assert d.response is not None and d.response.usage is not None
        answers.append(d.response.choices[0].message.content)
        assert 0 < d.response.usage.completion_tokens <= 20
    assert isinstance(answers[0], str) and answers[0].strip(), "real, non-empty text"
    assert answers[0] == answers[1], "deterministic with a fixed seed at temperature 0"


def test_metadata_and_a_filtered_list_through_the_sdk(client: Perplexity) -> None:
    """metadata goes in with extra_body and comes back as a field of the parsed object; the
    filters go in with extra_query, as the SDK writes lists (a,b) and dicts (k[x]=y)."""
    made = {}
    for team in ("a", "b", "a"):
        created = client.async_.chat.completions.create(
            request={"model": "echo", "messages": [{"role": "user", "content": team}]},
            extra_body={"metadata": {"team": team}},
        )
        assert created.metadata == {"team": team}  # type: ignore[attr-defined]
        made[created.id] = team
    ids = list(made)
    for request_id in ids:
        poll(client, request_id)
    got = client.async_.chat.completions.get(ids[0])
    assert got.metadata == {"team": "a"}  # type: ignore[attr-defined]

    seen: list[str] = []
    query: dict[str, object] = {
        "status": ["COMPLETED", "FAILED"],
        "metadata": {"team": "a"},
        "limit": 1,
    }
    for _ in range(5):
        page = client.async_.chat.completions.list(extra_query=query)
        seen.extend(r.id for r in page.requests)
        assert all(r.metadata == {"team": "a"} for r in page.requests)  # type: ignore[attr-defined]
        if page.next_token is None:
            break
        query = {**query, "next_token": page.next_token}
    assert seen == [ids[2], ids[0]]
    with pytest.raises(perplexity.BadRequestError, match="other filters"):
        client.async_.chat.completions.list(
            extra_query={"status": ["COMPLETED"], "limit": 1, "next_token": query["next_token"]}
        )
