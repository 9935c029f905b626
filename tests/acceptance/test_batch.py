"""The batch route through the real server, on both stores and both path families: items
in order, each failing alone, idempotency within and across batches, the batch's own shape
errors, limits counting every item, and the created requests running like any other."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import PATH, chat, wait_finished
from tests.acceptance.test_http_errors import assert_422, assert_error
from tests.acceptance.test_limits import apis, assert_429, key_with, listed
from tests.harness import ChatqServer

SONAR = "/v1/async/sonar"
FAMILIES = [PATH, SONAR]


@pytest.fixture
def client(server: ChatqServer, new_key: Callable[[], str]) -> Iterator[httpx.Client]:
    with server.client(new_key()) as client:
        yield client


def batch(client: httpx.Client, items: list[Any], path: str = PATH) -> list[dict[str, Any]]:
    """The results of a batch that was answered 200."""
    response = client.post(f"{path}/batch", json={"requests": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"results"} and len(body["results"]) == len(items)
    results: list[dict[str, Any]] = body["results"]
    return results


def item_error(result: dict[str, Any], code: int, type_: str) -> str:
    """An item's error in the documented shape; its message."""
    assert set(result) == {"error"}, result
    error = result["error"]
    assert set(error) == {"message", "type", "code"} and (error["code"], error["type"]) == (
        code,
        type_,
    ), error
    assert isinstance(error["message"], str) and error["message"]
    message: str = error["message"]
    return message


@pytest.mark.parametrize("path", FAMILIES)
def test_items_come_back_in_order_and_run(client: httpx.Client, path: str) -> None:
    """Wrapped and flat items, with metadata, priority and a webhook: each result the object
    create would return, in the order sent; then they run, and list and get show them on
    both path families."""
    items = [
        {**chat("first"), "metadata": {"n": "0"}},
        {"model": "echo", "messages": [{"role": "user", "content": "flat"}], "priority": 5},
        {**chat("hooked"), "webhook_url": "https://hooks.invalid/batch"},
        chat("last", stream=True),
    ]
    results = batch(client, items, path)
    assert [r["status"] for r in results] == ["CREATED"] * 4
    assert [r["metadata"] for r in results] == [{"n": "0"}, {}, {}, {}]
    assert all(r["response"] is None and r["error_message"] is None for r in results)
    ids = [r["id"] for r in results]
    assert len(set(ids)) == 4
    for family in FAMILIES:
        summaries = client.get(family).json()["requests"]
        assert [s["id"] for s in summaries] == ids[::-1]
        assert client.get(f"{family}/{ids[0]}").json()["metadata"] == {"n": "0"}
    answers = [wait_finished(client, i) for i in ids]
    assert [a["status"] for a in answers] == ["COMPLETED"] * 4
    assert [a["response"]["choices"][0]["message"]["content"] for a in answers] == [
        "first",
        "flat",
        "hooked",
        "last",
    ]
    hook = client.get(f"{path}/{ids[2]}/webhook")
    assert hook.status_code == 200 and hook.json()["url"] == "https://hooks.invalid/batch"
    assert client.get(f"{path}/{ids[0]}/webhook").status_code == 404, "no webhook asked for"


def test_invalid_items_fail_alone(client: httpx.Client) -> None:
    good = chat("good")
    items: list[Any] = [
        good,
        {"request": {"model": "echo"}},  # no messages
        chat(model="no-such-model"),
        {**chat(), "webhook_url": "ftp://example.com/hook"},
        {**chat(), "priority": 5000},
        {**chat(), "metadata": {"k": 7}},
        "not an object",
        {"neither": "form"},
        chat("good too"),
    ]
    results = batch(client, items)
    assert results[0]["status"] == results[-1]["status"] == "CREATED"
    assert "request.messages" in item_error(results[1], 422, "invalid_request")
    assert "no-such-model" in item_error(results[2], 400, "invalid_model")
    item_error(results[3], 400, "invalid_webhook_url")
    assert "priority" in item_error(results[4], 422, "invalid_request")
    assert "metadata.k" in item_error(results[5], 422, "invalid_request")
    item_error(results[6], 422, "invalid_request")
    assert "request" in item_error(results[7], 422, "invalid_request")
    assert [s["id"] for s in client.get(PATH).json()["requests"]] == [
        results[-1]["id"],
        results[0]["id"],
    ]
    # NaN is no JSON number: refused for its item alone, as create refuses it.
    raw = f'{{"requests": [{json.dumps(chat())}, {json.dumps(chat(temperature=float("nan")))}]}}'
    response = client.post(
        f"{PATH}/batch", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    fine, nan = response.json()["results"]
    assert fine["status"] == "CREATED"
    assert "NaN" in item_error(nan, 400, "invalid_request")


def test_idempotency_keys_within_and_across_batches(client: httpx.Client) -> None:
    """A key repeated in a batch with the same request replays the first; with another
    request it conflicts; the same batch sent again creates nothing new."""
    items = [
        {**chat("a"), "idempotency_key": "a"},
        {**chat("b"), "idempotency_key": "b"},
        {**chat("a"), "idempotency_key": "a"},
        {**chat("not a"), "idempotency_key": "a"},
        chat("no key"),
    ]
    first = batch(client, items)
    # The replay is the first item's request as it is once the batch is committed: a worker
    # may have claimed it by then, so its status can be further along than the first's.
    assert first[2]["id"] == first[0]["id"]
    assert first[0]["id"] in item_error(first[3], 409, "idempotency_conflict")
    again = batch(client, items, SONAR)
    # The same requests, as they are now (the worker may have run them meanwhile).
    assert [r["id"] for r in again[:3]] == [r["id"] for r in first[:3]]
    assert again[3] == first[3]
    assert again[4]["id"] != first[4]["id"], "an item without a key is new each time"
    assert len(client.get(PATH).json()["requests"]) == 4
    # A key from a single create is the same key in a batch.
    single = client.post(PATH, json={**chat("single"), "idempotency_key": "s"}).json()
    (replayed,) = batch(client, [{**chat("single"), "idempotency_key": "s"}])
    assert replayed["id"] == single["id"]


def test_a_batch_that_is_not_one_is_refused_whole(client: httpx.Client) -> None:
    bodies: list[Any] = [
        {},
        {"requests": []},
        {"requests": "x"},
        [chat()],
        {"requests": [{}] * 1001},
    ]
    for body in bodies:
        response = client.post(f"{PATH}/batch", json=body)
        assert_422(response)
    too_many = client.post(f"{PATH}/batch", json={"requests": [{}] * 1001}).json()["detail"]
    assert [(e["loc"], e["type"]) for e in too_many] == [(["body", "requests"], "too_long")]
    assert_422(
        client.post(f"{PATH}/batch", content=b"{", headers={"Content-Type": "application/json"})
    )
    message = assert_error(
        client.post(f"{PATH}/batch", json={"requests": [chat()]}, headers={"Idempotency-Key": "k"}),
        400,
        "invalid_request",
    )
    assert "idempotency_key" in message
    unsigned = client.post(
        f"{PATH}/batch", json={"requests": [chat()]}, headers={"Authorization": ""}
    )
    assert_error(unsigned, 401)
    wrong_method = client.put(f"{PATH}/batch", json={"requests": [chat()]})
    assert_error(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST", "not the GET and DELETE of .../{id}"
    assert client.get(PATH).json()["requests"] == [], "nothing stored"


def test_a_batch_of_the_most_items_is_stored_whole(client: httpx.Client) -> None:
    """1000 items, written compactly to fit the test server's body limit."""
    items = [
        {"model": "echo", "messages": [{"role": "user", "content": str(i)}]} for i in range(1000)
    ]
    raw = json.dumps({"requests": items}, separators=(",", ":"))
    response = client.post(
        f"{PATH}/batch", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["CREATED"] * 1000
    listed_ids = [s["id"] for s in client.get(PATH, params={"limit": 1000}).json()["requests"]]
    assert listed_ids == [r["id"] for r in reversed(results)]
    assert (
        wait_finished(client, results[-1]["id"])["response"]["choices"][0]["message"]["content"]
        == "999"
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def limited_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatqServer]:
    """`chatq api` with no worker: what a batch stores stays unfinished."""
    with apis(request.param, tmp_path_factory.mktemp("batch-limits")) as (server,):
        yield server


def test_limits_count_each_item(limited_api: ChatqServer) -> None:
    """Items past the unfinished cap fail alone with a 429 error each; a batch the cap lets
    none of in is a 429 with Retry-After; replays at the cap are answered."""
    _, secret = key_with(limited_api, "--max-unfinished", "3")
    with limited_api.client(secret) as client:
        items = [{**chat(f"c{i}"), "idempotency_key": f"c{i}"} for i in range(5)]
        results = batch(client, items)
        assert [r.get("status") for r in results[:3]] == ["CREATED"] * 3
        for refused in results[3:]:
            assert "3" in item_error(refused, 429, "too_many_unfinished_requests")
        assert listed(client) == 3
        assert batch(client, items[:3]) == results[:3], "replays are not counted"
        whole = client.post(f"{PATH}/batch", json={"requests": items[3:]})
        assert assert_429(whole, "too_many_unfinished_requests") == 1
        assert "none of this batch" in whole.json()["error"]["message"]
        assert listed(client) == 3


def test_the_rate_counts_each_item(limited_api: ChatqServer) -> None:
    _, secret = key_with(limited_api, "--rpm", "4")  # a burst of 4, then one every 15 s
    with limited_api.client(secret) as client:
        results = batch(client, [chat(f"r{i}") for i in range(6)], SONAR)
        assert [r.get("status") for r in results[:4]] == ["CREATED"] * 4
        for refused in results[4:]:
            item_error(refused, 429, "rate_limited")
        retry_after = assert_429(
            client.post(f"{SONAR}/batch", json={"requests": [chat()]}), "rate_limited"
        )
        assert 10 <= retry_after <= 15
        assert listed(client) == 4


def test_the_route_is_documented(server: ChatqServer) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path in FAMILIES:
        operation = spec["paths"][f"{path}/batch"]["post"]
        assert operation["security"] == [{"HTTPBearer": []}]
        assert {"200", "400", "401", "422", "429"} <= set(operation["responses"])
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/AsyncApiChatCompletionsBatchRequest"}
    requests = schemas["AsyncApiChatCompletionsBatchRequest"]["properties"]["requests"]
    assert (requests["minItems"], requests["maxItems"]) == (1, 1000)
    assert [r["$ref"].rsplit("/", 1)[1] for r in requests["items"]["anyOf"]] == [
        "AsyncApiChatCompletionsRequest",
        "ApiChatCompletionsRequest",
    ]
    results = schemas["AsyncApiChatCompletionsBatchResponse"]["properties"]["results"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in results["items"]["anyOf"]} == {
        "AsyncApiChatCompletionsResponse",
        "ErrorResponse",
    }
