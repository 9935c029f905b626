"""Issue 12 over raw HTTP against the real server: both path families, stream: true,
long-polls and Prefer: wait, the event stream and Last-Event-ID, cancel and delete, and
each of their bad-input rules. Server-sent events are parsed with httpx-sse."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from chatq.api.events import EventIds, Position
from chatq.store import open_store
from tests.acceptance.conftest import PATH, UPSTREAM_KEY, chat, wait_finished, write_config
from tests.acceptance.test_http_errors import assert_422, assert_error
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer, create_key, database_url, run_cli
from tests.waiting import eventually

SONAR = "/v1/async/sonar"
FAMILIES = [PATH, SONAR]
CANCELLED = "cancelled by the client"
# A call that takes 30 s unless its client leaves. Only for requests with stream: true: the
# fake upstream notices a client that leaves a streamed call (and so stops at once when the
# request is cancelled), not one that leaves a plain call, which would keep it busy to the end.
SLOW = Reply(delay_s=30)


# One owner each for the module (a key costs a `chatq keys create`); the tests that count
# or list what an owner has use `client`, a fresh owner's.
@pytest.fixture(scope="module")
def alice(server: ChatqServer) -> Iterator[httpx.Client]:
    with server.client(create_key(server.database, "alice", owner="alice")) as client:
        yield client


@pytest.fixture(scope="module")
def bob(server: ChatqServer) -> Iterator[httpx.Client]:
    with server.client(create_key(server.database, "bob", owner="bob")) as client:
        yield client


@pytest.fixture
def client(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    with server.client(new_key()) as fresh:
        yield fresh


def unique(words: str) -> str:
    """A message no other test (nor the other dialect's run) sends: its rules are its own."""
    return f"{words} {uuid.uuid4().hex[:8]}"


def answer_of(content: str) -> str:
    """What the fake upstream answers to content."""
    return f"upstream: {content}"


def create(client: httpx.Client, body: Any, path: str = PATH, **headers: str) -> dict[str, Any]:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def read_events(
    client: httpx.Client,
    request_id: str,
    *,
    last_event_id: str | None = None,
    path: str = PATH,
    until: Callable[[list[ServerSentEvent]], bool] | None = None,
    timeout: float = 30,
) -> list[ServerSentEvent]:
    """The request's events, until the server ends the stream (or until(events so far) is
    true: the connection is then closed, as a client that goes away closes it)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    got: list[ServerSentEvent] = []
    with connect_sse(
        client, "GET", f"{path}/{request_id}/events", headers=headers, timeout=timeout
    ) as source:
        assert source.response.status_code == 200
        for event in source.iter_sse():
            got.append(event)
            if until is not None and until(got):
                break
    return got


def deltas(events: list[ServerSentEvent]) -> list[str]:
    return [str(e.json()["content"]) for e in events if e.event == "delta"]


def content_of(full: dict[str, Any]) -> str:
    text: str = full["response"]["choices"][0]["message"]["content"]
    return text


def call_of(upstream: FakeUpstream, content: str) -> int:
    """The index in upstream.calls of the (first) call whose last message is content."""

    def calls() -> list[int]:
        return [
            i
            for i, call in enumerate(list(upstream.calls))
            if call["messages"][-1]["content"] == content
        ]

    return eventually(calls, what=f"the upstream call for {content!r}", timeout=20)[0]


def get_waiting(client: httpx.Client, request_id: str, wait: float) -> dict[str, Any]:
    response = client.get(f"{PATH}/{request_id}", params={"wait": wait})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---- 1. both path families, the flat body


def test_a_request_made_on_one_path_family_is_visible_on_the_other(client: httpx.Client) -> None:
    ids = {}
    for made_on, seen_on in ((SONAR, PATH), (PATH, SONAR)):
        created = create(client, chat(f"made on {made_on}"), made_on)
        ids[made_on] = created["id"]
        got = client.get(f"{seen_on}/{created['id']}", params={"wait": 10})
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "COMPLETED"
        assert content_of(got.json()) == f"made on {made_on}"
    for path in FAMILIES:
        listed = client.get(path).json()
        assert [r["id"] for r in listed["requests"]] == [ids[PATH], ids[SONAR]]
        assert listed["next_token"] is None
    # The same object on both, field for field.
    for request_id in ids.values():
        on_both = [client.get(f"{path}/{request_id}").json() for path in FAMILIES]
        assert on_both[0] == on_both[1]


@pytest.mark.parametrize("path", FAMILIES)
def test_the_flat_body_is_the_request(alice: httpx.Client, path: str) -> None:
    flat = {"model": "echo", "messages": [{"role": "user", "content": "flat"}], "temperature": 0}
    created = create(alice, flat, path)
    assert created["status"] == "CREATED"
    done = wait_finished(alice, created["id"])
    assert done["status"] == "COMPLETED"
    assert content_of(done) == "flat"
    # A flat body is validated like the wrapped request.
    assert_422(alice.post(path, json={"model": "echo", "messages": []}))


def test_a_body_of_neither_form_is_422_showing_the_expected_shape(client: httpx.Client) -> None:
    for path in FAMILIES:
        for body in ({}, {"idempotency_key": "k"}, {"prompt": "hi"}):
            response = client.post(path, json=body)
            assert_422(response)
            (item,) = response.json()["detail"]
            assert item["loc"] == ["body", "request"]
            assert '{"request": {"model": ..., "messages": [...]}}' in item["msg"]
            assert '{"model": ..., "messages": [...]}' in item["msg"]
    assert client.get(PATH).json()["requests"] == [], "nothing was stored"


# ---- 2. stream: true


def test_stream_true_stores_the_same_whole_response(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("stream or not")
    whole = {
        "id": "up-fixed",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "upstream-llama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "An answer in several words."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
        "citations": ["https://example.com/a"],
        "search_results": [{"title": "A", "url": "https://example.com/a"}],
    }
    module_upstream.rule(content, Reply(json_body=whole))
    try:
        streamed = create(alice, chat(content, "fake-model", stream=True))
        plain = create(alice, chat(content, "fake-model"))
        results = [wait_finished(alice, r["id"])["response"] for r in (streamed, plain)]
    finally:
        module_upstream.rule(content, None)
    assert results[0] == results[1]
    assert results[0]["choices"][0]["message"]["content"] == "An answer in several words."
    assert results[0]["usage"]["total_tokens"] == 11
    assert results[0]["citations"] == whole["citations"]
    assert results[0]["search_results"] == whole["search_results"]
    sent = [c for c in module_upstream.calls if c["messages"][-1]["content"] == content]
    # The streamed request was streamed from the upstream, with usage asked for; the other not.
    (streamed_call,) = [c for c in sent if c.get("stream") is True]
    assert streamed_call["stream_options"] == {"include_usage": True}
    assert len(sent) == 2 and not any("stream" in c for c in sent if c is not streamed_call)


# ---- 3. long-poll and Prefer: wait


def test_wait_answers_with_the_finished_request(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("finish within the wait")
    module_upstream.rule(content, Reply(delay_s=0.5))
    created = create(alice, chat(content, "fake-model"))
    for path in FAMILIES:
        got = alice.get(f"{path}/{created['id']}", params={"wait": 20})
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "COMPLETED"
        assert content_of(got.json()) == answer_of(content)


def test_wait_answers_with_the_current_state_when_the_request_outlasts_it(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("outlast the wait")
    module_upstream.rule(content, SLOW)
    created = create(alice, chat(content, "fake-model", stream=True))
    got = get_waiting(alice, created["id"], 0.5)
    assert got["status"] in ("CREATED", "IN_PROGRESS")
    assert got["response"] is None
    assert alice.post(f"{PATH}/{created['id']}/cancel").status_code == 200
    assert get_waiting(alice, created["id"], 20)["status"] == "FAILED"


def test_wait_outside_0_to_60_or_not_a_number_is_422(alice: httpx.Client) -> None:
    created = create(alice, chat("wait rule"))
    for wait in ("61", "-1", "abc", "60.5", "", "nan", "inf", "1e3"):
        for path in FAMILIES:
            response = alice.get(f"{path}/{created['id']}", params={"wait": wait})
            assert_422(response)
            assert response.json()["detail"][0]["loc"] == ["query", "wait"], wait


def test_prefer_wait_answers_with_the_finished_object(alice: httpx.Client) -> None:
    for path, prefer, applied in (
        (PATH, "wait=10", "wait=10"),
        (SONAR, "respond-async, wait=10", "wait=10"),
        (PATH, "wait=100", "wait=60"),  # capped at 60
    ):
        response = alice.post(path, json=chat("prefer"), headers={"Prefer": prefer})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "COMPLETED"
        assert content_of(response.json()) == "prefer"
        assert response.headers["preference-applied"] == applied


def test_prefer_wait_on_a_slower_request_answers_without_preference_applied(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("slower than the preference")
    module_upstream.rule(content, SLOW)
    body = chat(content, "fake-model", stream=True)
    response = alice.post(PATH, json=body, headers={"Prefer": "wait=1"})
    assert response.status_code == 200, response.text
    assert "preference-applied" not in response.headers
    assert response.json()["status"] in ("CREATED", "IN_PROGRESS")
    assert response.json()["response"] is None
    alice.post(f"{PATH}/{response.json()['id']}/cancel")
    assert get_waiting(alice, response.json()["id"], 20)["status"] == "FAILED"


def test_an_unreadable_prefer_wait_is_ignored(alice: httpx.Client) -> None:
    for prefer in ("wait=abc", "wait=-1", "wait=1.5", "wait", "wait=", "=5"):
        response = alice.post(PATH, json=chat("ignored"), headers={"Prefer": prefer})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "CREATED", prefer
        assert "preference-applied" not in response.headers


# ---- 4. the event stream


def test_the_event_stream_of_a_streamed_request(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("watch me generate, piece by piece, " * 3)
    module_upstream.rule(content, Reply(token_delay_s=0.03, pieces=50))
    created = create(alice, chat(content, "fake-model", stream=True))
    events = read_events(alice, created["id"])

    assert all(e.id for e in events), "every event has an id"
    assert len({e.id for e in events}) == len(events)
    kinds = [e.event for e in events]
    assert kinds[0] == "status" and kinds[-1] == "done" and kinds.count("done") == 1
    assert set(kinds) == {"status", "delta", "done"}
    statuses = [e.json() for e in events if e.event == "status"]
    assert "IN_PROGRESS" in [s["status"] for s in statuses]
    assert statuses[-1]["status"] == "COMPLETED"
    assert all(s["run"] == 1 for s in statuses if s["status"] != "CREATED")
    assert all("response" not in s for s in statuses), "status events carry the summary"
    pieces = deltas(events)
    assert len(pieces) > 1, "the text arrives as it is generated, not in one piece at the end"
    done = events[-1].json()
    assert done == alice.get(f"{PATH}/{created['id']}").json()
    assert "".join(pieces) == content_of(done) == answer_of(content)


def test_reconnecting_with_last_event_id_continues_with_no_gap_and_no_repeat(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("resume me where I was, " * 4)
    module_upstream.rule(content, Reply(token_delay_s=0.04, pieces=60))
    created = create(alice, chat(content, "fake-model", stream=True))
    first = read_events(alice, created["id"], until=lambda got: len(deltas(got)) >= 3)
    assert first[-1].event == "delta"
    # Resumed on the other path family: the id holds, whichever route serves it.
    rest = read_events(alice, created["id"], last_event_id=first[-1].id, path=SONAR)
    assert deltas(rest), "the connection was closed mid-stream: text was still to come"
    assert rest[-1].event == "done"
    assert not {e.id for e in first} & {e.id for e in rest}, "no event twice"
    assert "".join(deltas(first) + deltas(rest)) == answer_of(content)
    assert content_of(rest[-1].json()) == answer_of(content)


def test_a_late_client_gets_the_text_as_one_delta_then_done(alice: httpx.Client) -> None:
    created = create(alice, chat("late to the party", stream=True), PATH, Prefer="wait=10")
    assert created["status"] == "COMPLETED"
    events = read_events(alice, created["id"])
    assert deltas(events) == ["late to the party"]
    assert [e.event for e in events if e.event != "status"] == ["delta", "done"]
    assert events[-1].json() == created


def test_a_request_not_streamed_has_no_delta_events(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("not streamed")
    module_upstream.rule(content, Reply(delay_s=0.5))
    created = create(alice, chat(content, "fake-model"))
    live = read_events(alice, created["id"])
    late = read_events(alice, created["id"])
    for events in (live, late):
        assert deltas(events) == []
        assert events[-1].event == "done"
        assert content_of(events[-1].json()) == answer_of(content)
    assert [e.json()["status"] for e in live if e.event == "status"][-1] == "COMPLETED"


def test_a_garbage_last_event_id_is_400(alice: httpx.Client) -> None:
    created = create(alice, chat("garbage id", stream=True), PATH, Prefer="wait=10")
    real = read_events(alice, created["id"])[0].id
    run, offset, rank, tag = real.split(".")
    for last_event_id in (
        "",
        "garbage",
        f"{run}.{offset}.{rank}",
        f"{run}.{offset}.{rank}.AAAAAAAA",
        f"{run}.{int(offset) + 1}.{rank}.{tag}",  # a real tag on another position
        f"a.b.c.{tag}",
        f"{real}." + "A" * 80,
        f"\u00e9{real}",
    ):
        for path in FAMILIES:
            response = alice.get(
                f"{path}/{created['id']}/events",
                headers=httpx.Headers({"Last-Event-ID": last_event_id}, encoding="utf-8"),
            )
            assert_error(response, 400, "invalid_event_id")


def test_a_last_event_id_of_another_request_is_400(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = create(alice, chat("mine", stream=True), PATH, Prefer="wait=10")
    other = create(alice, chat("other", stream=True), PATH, Prefer="wait=10")
    theirs = create(bob, chat("theirs", stream=True), PATH, Prefer="wait=10")
    for foreign in (other, theirs):
        owner = alice if foreign is other else bob
        event_id = read_events(owner, foreign["id"])[0].id
        for path in FAMILIES:
            response = alice.get(f"{path}/{mine['id']}/events", headers={"Last-Event-ID": event_id})
            assert_error(response, 400, "invalid_event_id")


def test_a_last_event_id_at_or_past_the_end_resumes_from_the_end(
    server: ChatqServer, alice: httpx.Client
) -> None:
    created = create(alice, chat("to the end", stream=True), PATH, Prefer="wait=10")
    events = read_events(alice, created["id"])
    # The run's status comes before its text, so that a late client knows which run the
    # text is; the finished status comes again at the end.
    assert [e.event for e in events] == ["status", "delta", "status", "done"]
    after = [
        [x.event for x in read_events(alice, created["id"], last_event_id=e.id, timeout=5)]
        for e in events
    ]
    # After done there is nothing: the stream ends at once (a client that reconnects after
    # the end, as EventSource does, is not left hanging).
    assert after == [["delta", "status", "done"], ["status", "done"], ["done"], []]

    # An offset past the end of the text: no client gets one from a run whose text only
    # grows, so forge one with the database's secret, as the server signs them.
    past = forge_event_id(server.database, created["id"], Position(1, 10_000, 2))
    resumed = read_events(alice, created["id"], last_event_id=past, timeout=5)
    assert [e.event for e in resumed] == ["status", "done"], "from the end: no text repeated"
    assert resumed[-1].json() == created


def test_a_last_event_id_past_the_end_of_live_text_resumes_from_its_end(
    server: ChatqServer, alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("live text past the end, " * 4)
    module_upstream.rule(content, Reply(token_delay_s=0.04, pieces=40))
    created = create(alice, chat(content, "fake-model", stream=True))
    read_events(alice, created["id"], until=lambda got: len(deltas(got)) >= 1)
    past = forge_event_id(server.database, created["id"], Position(1, 10_000, 2))
    resumed = read_events(alice, created["id"], last_event_id=past)
    assert resumed[-1].event == "done"
    text = "".join(deltas(resumed))
    assert text, "the text generated after the reconnect is sent, not held back"
    assert answer_of(content).endswith(text) and len(text) < len(answer_of(content))


def forge_event_id(database: str, request_id: str, position: Position) -> str:
    async def sign() -> str:
        store = await open_store(database)
        try:
            return EventIds(await store.secret("event_id")).encode(request_id, position)
        finally:
            await store.close()

    return asyncio.run(sign())


def test_events_of_a_missing_or_another_owners_request_are_404(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    theirs = create(bob, chat("bob's", stream=True))
    for path in FAMILIES:
        for request_id in (theirs["id"], "no-such-request"):
            assert_error(alice.get(f"{path}/{request_id}/events"), 404, "not_found")


# ---- 5. cancel


def test_cancel_stops_a_running_request_and_its_upstream_call(
    alice: httpx.Client, bob: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("a long answer nobody will read, " * 4)
    # About 20 s if nothing stops it.
    module_upstream.rule(content, Reply(token_delay_s=0.2, pieces=100))
    created = create(alice, chat(content, "fake-model", stream=True))
    request_id = created["id"]
    seen = read_events(alice, request_id, until=lambda got: len(deltas(got)) >= 1)
    call = call_of(module_upstream, content)

    assert_error(bob.post(f"{PATH}/{request_id}/cancel"), 404, "not_found")
    assert alice.get(f"{PATH}/{request_id}").json()["status"] == "IN_PROGRESS", "bob cannot"

    cancelled_at = time.monotonic()
    reply = alice.post(f"{SONAR}/{request_id}/cancel")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "IN_PROGRESS", "the worker records the end"
    failed = get_waiting(alice, request_id, 20)
    assert failed["status"] == "FAILED"
    assert failed["error_message"] == CANCELLED
    assert failed["failed_at"] is not None and failed["response"] is None
    assert time.monotonic() - cancelled_at < 5, "stopped at once, not when the answer ended"
    eventually(
        lambda: call in module_upstream.disconnects,
        what="the upstream to see the client leave",
        timeout=5,
    )

    # The text so far stays readable: a prefix of the answer, one delta for a late client.
    events = read_events(alice, request_id)
    (text,) = deltas(events)
    assert text.startswith(deltas(seen)[0])
    assert answer_of(content).startswith(text) and len(text) < len(answer_of(content))
    assert events[-1].event == "done" and events[-1].json() == failed
    # Cancelling again changes nothing.
    assert alice.post(f"{PATH}/{request_id}/cancel").json() == failed


COUNT_TO_5000 = (
    "Write the numbers from 1 to 5000 in words, separated by commas, with no commentary."
)


def test_cancel_stops_the_local_model_between_tokens(alice: httpx.Client) -> None:
    max_tokens = 1500
    request = {
        "model": "smollm2",
        # At temperature 0 SmolLM2 goes on counting until max_tokens stops it (about 40 s here).
        "messages": [{"role": "user", "content": COUNT_TO_5000}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    created = create(alice, {"request": request})
    request_id = created["id"]
    cancelled: list[httpx.Response] = []

    def cancel_after_first_text(got: list[ServerSentEvent]) -> bool:
        if deltas(got) and not cancelled:
            cancelled.append(alice.post(f"{PATH}/{request_id}/cancel"))
        return False  # read on: this stream sees the end too

    live = read_events(alice, request_id, until=cancel_after_first_text, timeout=60)
    assert cancelled and cancelled[0].status_code == 200
    done = live[-1].json()
    assert live[-1].event == "done"
    assert done["status"] == "FAILED" and done["error_message"] == CANCELLED
    text = "".join(deltas(live))
    assert text.strip(), "the model had generated text before the cancel"
    # Every token is at least one character: far fewer than max_tokens came out.
    assert len(text) < max_tokens // 2, text
    assert deltas(read_events(alice, request_id)) == [text], "the text so far stays readable"


def test_cancel_of_a_finished_request_returns_it_unchanged(alice: httpx.Client) -> None:
    created = create(alice, chat("already done"), PATH, Prefer="wait=10")
    assert created["status"] == "COMPLETED"
    for path in FAMILIES:
        response = alice.post(f"{path}/{created['id']}/cancel")
        assert response.status_code == 200, response.text
        assert response.json() == created
    assert alice.get(f"{PATH}/{created['id']}").json() == created


def test_cancel_of_a_missing_or_another_owners_request_is_404(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    theirs = create(bob, chat("bob's"))
    for path in FAMILIES:
        for request_id in (theirs["id"], "no-such-request"):
            assert_error(alice.post(f"{path}/{request_id}/cancel"), 404, "not_found")


def test_a_cancelled_request_that_had_not_started_never_runs(
    server: ChatqServer, tmp_path: Path, module_upstream: FakeUpstream
) -> None:
    """With no worker running, a request stays CREATED; cancelled, it fails at once, and a
    server started later (a restart between the cancel and any pick-up) never runs it."""
    config = write_config(tmp_path / "chatq.toml", module_upstream.base_url)
    dialect = "sqlite" if server.database.startswith("sqlite") else "postgres"
    env = {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    content, later = unique("cancelled before it started"), unique("submitted after")
    with database_url(dialect, tmp_path) as url:
        assert run_cli("migrate", "--database", url).returncode == 0
        key = create_key(url, "durable-cancel")
        common = ("--database", url, "--config", str(config))
        api = ChatqServer(tmp_path, *common, command="api", env=env).start()
        try:
            with api.client(key) as client:
                created = create(client, chat(content, "fake-model"))
                assert get_waiting(client, created["id"], 0.5)["status"] == "CREATED"
                reply = client.post(f"{PATH}/{created['id']}/cancel")
                assert reply.status_code == 200, reply.text
                cancelled = reply.json()
                assert cancelled["status"] == "FAILED"
                assert cancelled["error_message"] == CANCELLED
                assert cancelled["failed_at"] is not None and cancelled["started_at"] is None
                events = read_events(client, created["id"])
                assert events[-1].event == "done" and events[-1].json() == cancelled
        finally:
            assert api.stop() in (0, -15), api.log()

        serve = ChatqServer(tmp_path, *common, command="serve", env=env).start()
        try:
            with serve.client(key) as client:
                after = create(client, chat(later, "fake-model"))
                assert get_waiting(client, after["id"], 20)["status"] == "COMPLETED"
                assert client.get(f"{PATH}/{created['id']}").json() == cancelled
        finally:
            assert serve.stop() in (0, -15), serve.log()
    asked = [c["messages"][-1]["content"] for c in module_upstream.calls]
    assert later in asked, "the worker ran what came after"
    assert content not in asked, "the cancelled request never reached the upstream"


# ---- 6. delete


def test_delete_removes_a_finished_request_and_its_text(client: httpx.Client) -> None:
    created = create(client, chat("delete me", stream=True), PATH, Prefer="wait=10")
    kept = create(client, chat("keep me"), PATH, Prefer="wait=10")
    assert created["status"] == "COMPLETED"
    assert deltas(read_events(client, created["id"])) == ["delete me"]

    response = client.delete(f"{SONAR}/{created['id']}")
    assert response.status_code == 204
    assert response.content == b""
    for path in FAMILIES:
        assert_error(client.get(f"{path}/{created['id']}"), 404, "not_found")
        assert_error(client.get(f"{path}/{created['id']}/events"), 404, "not_found")
        assert_error(client.post(f"{path}/{created['id']}/cancel"), 404, "not_found")
        assert_error(client.delete(f"{path}/{created['id']}"), 404, "not_found")
        assert [r["id"] for r in client.get(path).json()["requests"]] == [kept["id"]]


def test_delete_of_an_unfinished_request_is_409(
    alice: httpx.Client, module_upstream: FakeUpstream
) -> None:
    content = unique("still running")
    module_upstream.rule(content, SLOW)
    created = create(alice, chat(content, "fake-model", stream=True))
    for path in FAMILIES:
        message = assert_error(alice.delete(f"{path}/{created['id']}"), 409, "conflict")
        assert "cancel it first" in message
    assert alice.get(f"{PATH}/{created['id']}").status_code == 200, "still there"
    alice.post(f"{PATH}/{created['id']}/cancel")
    assert get_waiting(alice, created["id"], 20)["status"] == "FAILED"
    assert alice.delete(f"{PATH}/{created['id']}").status_code == 204


def test_delete_of_a_missing_or_another_owners_request_is_404(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    theirs = create(bob, chat("bob's"), PATH, Prefer="wait=10")
    for path in FAMILIES:
        for request_id in (theirs["id"], "no-such-request"):
            assert_error(alice.delete(f"{path}/{request_id}"), 404, "not_found")
    assert bob.get(f"{PATH}/{theirs['id']}").json() == theirs, "bob's request is untouched"
