"""Every error case of the contract, over raw HTTP against the real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import KEY_CACHE_S, MAX_REQUEST_BYTES, PATH, chat, wait_finished
from tests.harness import ChatqServer, create_key, run_cli
from tests.waiting import eventually

JSON = {"Content-Type": "application/json"}


def assert_error(response: httpx.Response, status: int, type_: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code"}
    assert body["error"]["code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if type_ is not None:
        assert body["error"]["type"] == type_
    message: str = body["error"]["message"]
    return message


def assert_422(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert all({"loc", "msg", "type"} <= set(item) for item in detail)


@pytest.fixture
def alice(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    with server.client(new_key()) as client:
        yield client


@pytest.fixture
def bob(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    with server.client(new_key()) as client:
        yield client


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer a b",
        "Basic dXNlcjpwYXNz",
        "bearer nope",
        "Bearer cq-00-x",
        "Token x",
    ],
)
def test_missing_or_bad_credentials_are_401(server: ChatqServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with httpx.Client(base_url=server.base_url) as client:
        for response in (
            client.get(PATH, headers=headers),
            client.get(f"{PATH}/some-id", headers=headers),
            client.post(PATH, json=chat(), headers=headers),
        ):
            assert_error(response, 401, "authentication_error")
            assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_401(server: ChatqServer, new_key: Callable[[], str]) -> None:
    key = new_key()
    with server.client(key) as client:
        assert client.get(PATH).status_code == 200
        key_id = key.split("-")[1]
        done = run_cli("keys", "revoke", key_id, "--database", server.database)
        assert done.returncode == 0, done.stderr
        # The server remembers a key's owner for key_cache_s; after that it is refused.
        eventually(
            lambda: client.get(PATH).status_code,
            lambda status: status != 200,
            what="the revoked key to be refused",
            timeout=KEY_CACHE_S + 5,
        )
        assert_error(client.get(PATH), 401)


def test_owners_are_isolated(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = alice.post(PATH, json=chat("alice's secret")).json()
    response = bob.get(f"{PATH}/{mine['id']}")
    message = assert_error(response, 404, "not_found")
    missing = assert_error(bob.get(f"{PATH}/no-such-request"), 404, "not_found")
    # A foreign id and a missing one look exactly alike.
    assert message.replace(mine["id"], "X") == missing.replace("no-such-request", "X")
    assert bob.get(PATH).json() == {"requests": [], "next_token": None}
    assert [r["id"] for r in alice.get(PATH).json()["requests"]] == [mine["id"]]


def test_full_object_shape(alice: httpx.Client) -> None:
    created = alice.post(PATH, json=chat("shape")).json()
    assert set(created) == {
        "id",
        "model",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "failed_at",
        "metadata",
        "response",
        "error_message",
    }
    assert created["metadata"] == {}
    assert created["status"] == "CREATED"
    done = wait_finished(alice, created["id"])
    assert done["status"] == "COMPLETED"
    assert all(isinstance(done[k], int) for k in ("created_at", "started_at", "completed_at"))
    response = done["response"]
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"] == {"role": "assistant", "content": "shape"}
    summary = alice.get(PATH).json()["requests"][0]
    assert set(summary) == set(created) - {"response", "error_message"}


def test_unknown_model_is_400_listing_models(alice: httpx.Client) -> None:
    message = assert_error(alice.post(PATH, json=chat(model="gpt-99")), 400, "invalid_model")
    assert "gpt-99" in message
    for served in ("fake-model", "sonar*", "echo"):
        assert served in message


def test_stream_true_is_accepted(alice: httpx.Client) -> None:
    for stream in (True, False):
        response = alice.post(PATH, json=chat(stream=stream))
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("stream", [0, 1, "true", "no"])
def test_stream_is_a_json_boolean_on_every_create_route(alice: httpx.Client, stream: Any) -> None:
    """Not read as one: 0 and "true" were taken for booleans (schemathesis found it)."""
    body = chat(stream=stream)
    for path, sent in (
        (PATH, body),
        (PATH, body["request"]),
        ("/chat/completions", body["request"]),
    ):
        response = alice.post(path, json=sent)
        assert_422(response)
        assert response.json()["detail"][0]["loc"][-1] == "stream", (path, response.text)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"request": {}},
        {"request": {"model": "echo"}},
        {"request": {"model": "echo", "messages": []}},
        {"request": {"messages": [{"role": "user", "content": "x"}]}},
        {"request": {"model": "echo", "messages": [{"role": "robot", "content": "x"}]}},
        {"request": {"model": "echo", "messages": [{"content": "x"}]}},
        {"request": {"model": "echo", "messages": "hello"}},
        {"request": {"model": 5, "messages": [{"role": "user", "content": "x"}]}},
        {"request": {"model": "", "messages": [{"role": "user", "content": "x"}]}},
        {"request": "echo"},
        [],
        "string",
        None,
        {"request": {"model": "echo", "messages": [{"role": "user", "content": 7}]}},
        {**chat(), "idempotency_key": ""},
        {**chat(), "idempotency_key": "k" * 257},
        # Both are stored as text, which PostgreSQL cannot give a NUL (schemathesis found it).
        {**chat(), "idempotency_key": "k\u0000"},
        chat(model="sonar\u0000"),
    ],
)
def test_schema_violations_are_422(alice: httpx.Client, body: Any) -> None:
    assert_422(alice.post(PATH, json=body))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"\xff\xfe\x00",
        b'{"request": NaN}',
        b'{"request": {"model": "echo", "messages": [{"role": "user", "content": "x"}], '
        b'"temperature": Infinity}}',
        b"[" * 5000,
        b'{"request": ' * 3000,
    ],
)
def test_malformed_bodies_are_4xx_never_500(alice: httpx.Client, raw: bytes) -> None:
    response = alice.post(PATH, content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain; charset=utf-8"]
)
def test_a_json_body_sent_as_another_media_type_is_told_so(
    alice: httpx.Client, content_type: str
) -> None:
    raw = httpx.Request("POST", "/", json=chat()).content  # what curl -d '{...}' would send
    response = alice.post(PATH, content=raw, headers={"Content-Type": content_type})
    assert_422(response)
    (item,) = response.json()["detail"]
    assert item["loc"] == ["body"]
    assert "Content-Type: application/json" in item["msg"] and content_type in item["msg"]


def test_a_json_body_with_a_json_media_type_is_accepted(alice: httpx.Client) -> None:
    raw = httpx.Request("POST", "/", json=chat()).content
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = alice.post(PATH, content=raw, headers={"Content-Type": content_type})
        assert response.status_code == 200, response.text


def test_odd_but_valid_input_is_kept_verbatim(alice: httpx.Client) -> None:
    request = {
        "model": "echo",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "chunks \u2603 \x00 ok"}]},
        ],
        "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
        "search_recency_filter": "week",
        "huge": 10**30,
        "nested": {"a": [1, 2.5, None, True, {"b": "c"}]},
    }
    created = alice.post(PATH, json={"request": request})
    assert created.status_code == 200, created.text
    done = wait_finished(alice, created.json()["id"])
    assert done["status"] == "COMPLETED"
    assert done["response"]["choices"][0]["message"]["content"] == "chunks \u2603 \x00 ok"


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5", ""])
def test_limit_out_of_range_is_422(alice: httpx.Client, limit: str) -> None:
    assert_422(alice.get(PATH, params={"limit": limit}))


def test_limit_bounds_and_default(alice: httpx.Client) -> None:
    for i in range(22):
        alice.post(PATH, json=chat(f"m{i}"))
    assert len(alice.get(PATH).json()["requests"]) == 20
    assert len(alice.get(PATH, params={"limit": 1}).json()["requests"]) == 1
    everything = alice.get(PATH, params={"limit": 1000}).json()
    assert len(everything["requests"]) == 22 and everything["next_token"] is None


@pytest.mark.parametrize(
    "token",
    ["x", "abc", "%%%", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "A" * 200, "\u00e9t\u00e9", "==="],
)
def test_malformed_next_token_is_400(alice: httpx.Client, token: str) -> None:
    assert_error(alice.get(PATH, params={"next_token": token}), 400, "invalid_next_token")


def test_foreign_and_tampered_next_token_is_400(alice: httpx.Client, bob: httpx.Client) -> None:
    for i in range(3):
        alice.post(PATH, json=chat(f"t{i}"))
        bob.post(PATH, json=chat(f"t{i}"))
    token = alice.get(PATH, params={"limit": 1}).json()["next_token"]
    assert token and all(c.isalnum() or c in "-_" for c in token), "URL-safe"
    assert alice.get(PATH, params={"next_token": token, "limit": 1}).status_code == 200
    assert_error(bob.get(PATH, params={"next_token": token}), 400, "invalid_next_token")
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert_error(alice.get(PATH, params={"next_token": tampered}), 400, "invalid_next_token")


@pytest.mark.parametrize("header", ["", "k" * 257])
def test_idempotency_key_header_out_of_bounds_is_422(alice: httpx.Client, header: str) -> None:
    response = alice.post(PATH, json=chat("bounds"), headers={"Idempotency-Key": header})
    assert_422(response)
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert alice.get(PATH).json()["requests"] == [], "nothing was stored"


def test_idempotency_key_in_body_or_header(alice: httpx.Client) -> None:
    first = alice.post(PATH, json=chat("idem"), headers={"Idempotency-Key": "h-1"}).json()
    replay_header = alice.post(PATH, json=chat("idem"), headers={"Idempotency-Key": "h-1"}).json()
    replay_body = alice.post(PATH, json={**chat("idem"), "idempotency_key": "h-1"}).json()
    assert first["id"] == replay_header["id"] == replay_body["id"]
    conflict = alice.post(PATH, json=chat("different"), headers={"Idempotency-Key": "h-1"})
    assert_error(conflict, 409, "idempotency_conflict")
    mismatch = alice.post(
        PATH, json={**chat("idem"), "idempotency_key": "b-1"}, headers={"Idempotency-Key": "h-2"}
    )
    assert_error(mismatch, 400)
    assert len(alice.get(PATH).json()["requests"]) == 1


def test_idempotency_is_scoped_to_the_owner(alice: httpx.Client, bob: httpx.Client) -> None:
    a = alice.post(PATH, json={**chat("same"), "idempotency_key": "shared"}).json()
    b = bob.post(PATH, json={**chat("same"), "idempotency_key": "shared"}).json()
    assert a["id"] != b["id"]


def test_replay_returns_the_object_whatever_its_status(alice: httpx.Client) -> None:
    first = alice.post(PATH, json={**chat("later"), "idempotency_key": "st"}).json()
    done = wait_finished(alice, first["id"])
    assert done["status"] == "COMPLETED"
    replay = alice.post(PATH, json={**chat("later"), "idempotency_key": "st"}).json()
    assert replay == done


def test_concurrent_duplicates_create_one_job(alice: httpx.Client) -> None:
    body = {**chat("race"), "idempotency_key": "race-1"}

    def submit(_: int) -> httpx.Response:
        return alice.post(PATH, json=body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(submit, range(32)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(alice.get(PATH).json()["requests"]) == 1


def test_unknown_routes_and_methods_use_the_error_shape(alice: httpx.Client) -> None:
    assert_error(alice.get("/nope"), 404)
    refused = alice.delete(PATH)
    assert_error(refused, 405)
    # Allow names every method of the path, not only those of the first route matched.
    assert refused.headers["allow"] == "GET, POST"
    assert alice.put(f"{PATH}/some-id").headers["allow"] == "DELETE, GET"


def test_service_routes(server: ChatqServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ok"}
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in (
        "ListAsyncApiChatCompletionsResponse",
        "AsyncApiChatCompletionsResponseSummary",
        "AsyncProcessingStatus",
        "AsyncApiChatCompletionsResponse",
        "AsyncApiChatCompletionsRequest",
        "CompletionResponse",
    ):
        assert name in schemas, sorted(schemas)
    assert schemas["AsyncProcessingStatus"]["enum"] == [
        "CREATED",
        "IN_PROGRESS",
        "COMPLETED",
        "FAILED",
    ]
    listed = schemas["ListAsyncApiChatCompletionsResponse"]
    assert listed["required"] == ["requests"]
    assert listed["properties"]["requests"]["items"]["$ref"].endswith(
        "/AsyncApiChatCompletionsResponseSummary"
    )
    assert set(schemas["AsyncApiChatCompletionsResponseSummary"]["required"]) == {
        "id",
        "created_at",
        "model",
        "status",
    }
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `chatq keys create`.",
    }
    # The models this server's config routes are named, exact names as examples.
    model = schemas["ApiChatCompletionsRequest"]["properties"]["model"]
    assert model["examples"] == ["fake-model", "echo", "smollm2"]
    assert "sonar*" in model["description"]
    create_op = spec["paths"]["/async/chat/completions"]["post"]
    assert create_op["responses"]["200"]["links"]["GetAsyncChatCompletion"]["parameters"] == {
        "api_request": "$response.body#/id"
    }
    list_op = spec["paths"]["/async/chat/completions"]["get"]
    assert list_op["operationId"] == "list_async_chat_completions"
    assert [p["name"] for p in list_op["parameters"]] == [
        "limit",
        "next_token",
        "model",
        "created_after",
        "created_before",
        "status",
        "metadata",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            secured = op.get("security") == [{"HTTPBearer": []}]
            assert secured == (path not in ("/healthz", "/readyz")), (method, path)


def test_keys_of_one_owner_share_its_requests(server: ChatqServer) -> None:
    old = create_key(server.database, "laptop", owner="rotating-owner")
    new = create_key(server.database, "laptop-2", owner="rotating-owner")
    with server.client(old) as before, server.client(new) as after:
        made = before.post(PATH, json=chat("kept across keys")).json()
        assert after.get(f"{PATH}/{made['id']}").status_code == 200
        assert [r["id"] for r in after.get(PATH).json()["requests"]] == [made["id"]]


def test_bodies_over_the_limit_are_413(alice: httpx.Client) -> None:
    def body(size: int) -> bytes:
        head, tail = (
            b'{"request": {"model": "echo", "messages": [{"role": "user", "content": "',
            b'"}]}}',
        )
        return head + b"x" * (size - len(head) - len(tail)) + tail

    fits = alice.post(PATH, content=body(MAX_REQUEST_BYTES), headers=JSON)
    assert fits.status_code == 200, fits.text
    message = assert_error(
        alice.post(PATH, content=body(MAX_REQUEST_BYTES + 1), headers=JSON),
        413,
        "request_too_large",
    )
    assert str(MAX_REQUEST_BYTES) in message

    def streamed() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        whole = body(4 * MAX_REQUEST_BYTES)
        for start in range(0, len(whole), 8192):
            yield whole[start : start + 8192]

    assert_error(alice.post(PATH, content=streamed(), headers=JSON), 413, "request_too_large")
    assert len(alice.get(PATH).json()["requests"]) == 1, "only the body that fit was stored"


@pytest.mark.parametrize(
    "raw_headers",
    [
        [(b"Authorization", b"Bearer \xff\xfe")],
        [(b"Authorization", b"Bearer " + b"k" * 10_000)],
        [(b"Authorization", b"Bearer\tcq-123")],
        [(b"Authorization", b"Bearer  cq-123")],
        [(b"Authorization", b"BEARER")],
        [(b"Authorization", b"Bearer a"), (b"Authorization", b"Bearer b")],
        [(b"authorization", b"Digest username=x")],
    ],
)
def test_odd_authorization_headers_are_401(
    server: ChatqServer, raw_headers: list[tuple[bytes, bytes]]
) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        response = client.get(PATH, headers=httpx.Headers(raw_headers))
    assert_error(response, 401, "authentication_error")
    assert response.headers["www-authenticate"] == "Bearer"
