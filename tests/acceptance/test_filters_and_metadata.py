"""Metadata on create and the list's filters, over raw HTTP against the real server, on both
path families: what they return, how next_token is bound to them, and bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import PATH, chat, wait_finished
from tests.acceptance.test_http_errors import assert_422, assert_error
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer

SONAR = "/v1/async/sonar"
Params = list[tuple[str, Any]]  # query parameters, in order, a name maybe more than once


@pytest.fixture
def client(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    with server.client(new_key()) as client:
        yield client


def create(client: httpx.Client, path: str = PATH, **body: Any) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def listed(client: httpx.Client, params: Params, path: str = PATH) -> list[str]:
    """The ids of every page of the list with these query parameters, walked with limit=1."""
    found: list[str] = []
    token: str | None = None
    for _ in range(50):
        query = list(params) + [("limit", "1")] + ([("next_token", token)] if token else [])
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(r["id"] for r in page["requests"])
        token = page["next_token"]
        if token is None:
            return found
    raise AssertionError("the walk did not end")


def test_metadata_is_returned_by_create_get_list_on_both_paths(client: httpx.Client) -> None:
    metadata = {"team": "search", "batch": "b-7", "é": "☃"}
    created = create(client, SONAR, **chat("labelled"), metadata=metadata)
    assert created["metadata"] == metadata
    plain = create(client, **chat("plain"))
    assert plain["metadata"] == {}
    for path in (PATH, SONAR):
        assert client.get(f"{path}/{created['id']}").json()["metadata"] == metadata
        summaries = client.get(path).json()["requests"]
        assert [s["metadata"] for s in summaries] == [{}, metadata]
    done = wait_finished(client, created["id"])
    assert done["status"] == "COMPLETED" and done["metadata"] == metadata


def test_metadata_in_the_flat_body_is_chatqs_never_sent_upstream(
    client: httpx.Client, module_upstream: FakeUpstream
) -> None:
    flat: dict[str, Any] = chat("flat-md", model="fake-model")["request"]
    created = create(client, **flat, metadata={"source": "flat"})
    assert created["metadata"] == {"source": "flat"}
    assert wait_finished(client, created["id"])["status"] == "COMPLETED"
    # In the wrapped form, the request's own metadata is a request field: kept and sent.
    wrapped = chat("wrapped-md", model="fake-model", metadata={"upstream": "yes"})
    done = wait_finished(client, create(client, **wrapped, metadata={"mine": "1"})["id"])
    assert done["metadata"] == {"mine": "1"}
    sent = {c["messages"][-1]["content"]: c for c in module_upstream.calls}
    assert "metadata" not in sent["flat-md"]
    assert sent["wrapped-md"]["metadata"] == {"upstream": "yes"}


def test_metadata_at_its_limits_is_accepted(client: httpx.Client) -> None:
    biggest = {f"{n:02d}" + "k" * 62: "v" * 512 for n in range(16)}
    assert create(client, **chat(), metadata=biggest)["metadata"] == biggest
    assert create(client, **chat(), metadata={})["metadata"] == {}
    assert create(client, **chat(), metadata=None)["metadata"] == {}


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({f"k{n}": "v" for n in range(17)}, "at most 16 items"),
        ({"k" * 65: "v"}, "at most 64 characters"),
        ({"": "v"}, "at least 1 character"),
        ({"k": "v" * 513}, "at most 512 characters"),
        ({"k": 1}, "valid string"),
        ({"k": None}, "valid string"),
        ({"k": ["v"]}, "valid string"),
        ({"k": "a\x00b"}, "pattern"),
        (["k", "v"], "valid dictionary"),
        ("k=v", "valid dictionary"),
    ],
)
@pytest.mark.parametrize("form", ["wrapped", "flat"])
def test_metadata_beyond_its_limits_is_422_saying_why(
    client: httpx.Client, metadata: Any, says: str, form: str
) -> None:
    body = chat() if form == "wrapped" else chat()["request"]
    response = client.post(PATH, json={**body, "metadata": metadata})
    assert_422(response)
    detail = response.json()["detail"]
    assert all(item["loc"][:2] == ["body", "metadata"] for item in detail), detail
    assert any(says in item["msg"] for item in detail), detail
    assert client.get(PATH).json()["requests"] == [], "nothing stored"


def test_a_lone_surrogate_in_metadata_is_422_not_500(client: httpx.Client) -> None:
    raw = b'{"request": {"model": "echo", "messages": [{"role": "user", "content": "x"}]},'
    response = client.post(
        PATH,
        content=raw + b' "metadata": {"k": "\\ud800"}}',
        headers={"Content-Type": "application/json"},
    )
    assert_422(response)
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "metadata", "k"] and problem["type"] == "string_unicode"


def test_each_filter_on_both_paths(client: httpx.Client, module_upstream: FakeUpstream) -> None:
    a = create(client, **chat("a"), metadata={"team": "a", "env": "prod"})
    b = create(client, SONAR, **chat("b", model="fake-model"), metadata={"team": "b"})
    c = create(client, **chat("c"), metadata={"team": "a"})
    for request in (a, b, c):
        assert wait_finished(client, request["id"])["status"] == "COMPLETED"
    module_upstream.script(Reply(400, {"error": {"message": "no"}}))
    failed = create(client, **chat("fails", model="fake-model"))
    assert wait_finished(client, failed["id"])["status"] == "FAILED"
    everything = [failed["id"], c["id"], b["id"], a["id"]]
    for path in (PATH, SONAR):
        assert listed(client, [], path) == everything
        assert listed(client, [("status", "FAILED")], path) == [failed["id"]]
        assert listed(client, [("status", "COMPLETED")], path) == [c["id"], b["id"], a["id"]]
        both = [failed["id"], c["id"], b["id"], a["id"]]
        assert listed(client, [("status", "COMPLETED,FAILED")], path) == both
        assert listed(client, [("status", "FAILED"), ("status", "COMPLETED")], path) == both
        assert listed(client, [("status", "CREATED")], path) == []
        assert listed(client, [("model", "fake-model")], path) == [failed["id"], b["id"]]
        assert listed(client, [("metadata.team", "a")], path) == [c["id"], a["id"]]
        assert listed(client, [("metadata[team]", "a"), ("metadata.env", "prod")], path) == [
            a["id"]
        ]
        assert listed(client, [("metadata.team", "a"), ("model", "fake-model")], path) == []
        since = [("created_after", str(c["created_at"]))]
        assert set(listed(client, since, path)) >= {failed["id"], c["id"]}
        until = [("created_before", str(a["created_at"] + 1))]
        assert a["id"] in listed(client, until, path)
        assert listed(client, [("created_before", str(a["created_at"]))], path) == []
        assert listed(client, [("created_after", "0"), ("created_before", "0")], path) == []
        # Another parameter is no filter (as the SDK's own extra query parameters).
        assert listed(client, [("metadatax", "1"), ("local_mode", "false")], path) == everything


def test_a_next_token_is_bound_to_its_filters(client: httpx.Client) -> None:
    for n in range(3):
        create(client, **chat(f"t{n}"), metadata={"team": "a"})
    every_status = ("status", "CREATED,IN_PROGRESS,COMPLETED")
    query: Params = [every_status, ("metadata.team", "a"), ("limit", "1")]
    token = client.get(PATH, params=query).json()["next_token"]
    assert token
    # The same filters, written another way: the same list.
    same: Params = [
        ("status", "COMPLETED"),
        ("status", "IN_PROGRESS,CREATED"),
        ("metadata[team]", "a"),
        ("limit", "1"),
        ("next_token", token),
    ]
    assert client.get(SONAR, params=same).status_code == 200
    others: list[Params] = [
        [("limit", "1")],
        [("status", "CREATED"), ("metadata.team", "a")],
        [("status", "CREATED,IN_PROGRESS,COMPLETED")],
        [("status", "CREATED,IN_PROGRESS,COMPLETED"), ("metadata.team", "b")],
        [("status", "CREATED,IN_PROGRESS,COMPLETED"), ("metadata.team", "a"), ("model", "echo")],
        [*query[:2], ("created_after", "0")],
    ]
    for other in others:
        response = client.get(PATH, params=[*other, ("next_token", token)])
        message = assert_error(response, 400, "invalid_next_token")
        assert "other filters" in message, other
    plain = client.get(PATH, params={"limit": 1}).json()["next_token"]
    response = client.get(PATH, params=[("status", "CREATED"), ("next_token", plain)])
    assert "other filters" in assert_error(response, 400, "invalid_next_token")


@pytest.mark.parametrize(
    "query",
    [
        [("status", "DONE")],
        [("status", "")],
        [("status", "completed")],
        [("status", "COMPLETED,")],
        [("status", "COMPLETED"), ("status", "NOPE")],
        [("model", "")],
        [("model", "a\x00b")],
        [("model", "m" * 257)],
        [("created_after", "-1")],
        [("created_after", "soon")],
        [("created_after", "1.5")],
        [("created_after", "1e99")],
        [("created_before", "99999999999999999999999")],
        [("created_before", "nan")],
        [("metadata", "team=a")],
        [("metadata.", "a")],
        [("metadata[]", "a")],
        [("metadata[team", "a")],
        [("metadata[team][lead]", "a")],
        [("metadata[team]x]", "a")],
        [("metadata." + "k" * 65, "a")],
        [("metadata.team", "v" * 513)],
        [("metadata.team", "a\x00")],
        [("metadata.team", "a"), ("metadata[team]", "b")],
        [(f"metadata.k{n}", "v") for n in range(17)],
    ],
)
@pytest.mark.parametrize("path", [PATH, SONAR])
def test_bad_filters_are_422_never_500(client: httpx.Client, query: Params, path: str) -> None:
    response = client.get(path, params=query)
    assert_422(response)
    assert all(item["loc"][0] == "query" for item in response.json()["detail"])


def test_the_openapi_document_describes_filters_and_metadata(server: ChatqServer) -> None:
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path in (PATH, SONAR):
        parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        assert {"status", "model", "created_after", "created_before", "metadata"} <= set(parameters)
        assert parameters["status"]["schema"]["items"] == {
            "$ref": "#/components/schemas/AsyncProcessingStatus"
        }
        assert parameters["metadata"]["style"] == "deepObject"
    metadata = schemas["AsyncApiChatCompletionsRequest"]["properties"]["metadata"]
    limits = next(s for s in metadata["anyOf"] if s.get("type") == "object")
    assert limits["maxProperties"] == 16
    assert limits["propertyNames"]["maxLength"] == 64
    assert limits["additionalProperties"]["maxLength"] == 512
    assert "metadata" in schemas["AsyncApiChatCompletionsResponseSummary"]["properties"]
