"""GET /usage and `chatq usage` on a real server, both dialects: finished requests counted
with their final tokens and the configured price; admin keys read any owner's usage, other
keys only their own (403); bad input gets the documented errors."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import PATH, chat, serving, wait_finished, write_config
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer, run_cli

PRICES = {"fake-model": {"prompt_per_1m": 2.0, "completion_per_1m": 8.0}}
_names = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def priced(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_upstream: FakeUpstream,
) -> Iterator[ChatqServer]:
    """`chatq serve` pricing fake-model, whose upstream reports no cost."""
    workdir = tmp_path_factory.mktemp("usage")
    config = write_config(workdir / "chatq.toml", module_upstream.base_url, prices=PRICES)
    with serving(request.param, workdir, config) as proc:
        yield proc


def key(server: ChatqServer, *extra: str) -> tuple[str, str]:
    """A new key for a new owner, made with `chatq keys create`: (owner, secret)."""
    owner = f"owner-{next(_names)}-{time.monotonic_ns()}"
    done = run_cli("keys", "create", owner, *extra, "--database", server.database)
    assert done.returncode == 0, done.stderr
    return owner, done.stdout.strip().splitlines()[-1]


def days_around_today() -> dict[str, str]:
    """A range that holds today, whenever the test runs (even across midnight UTC)."""
    today = datetime.now(UTC).date()
    return {"start": str(today - timedelta(1)), "end": str(today + timedelta(1))}


def finished(client: httpx.Client, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    ids = [client.post(PATH, json=body).json()["id"] for body in bodies]
    return [wait_finished(client, i) for i in ids]


def test_usage_counts_the_final_tokens_at_the_configured_price(
    priced: ChatqServer, module_upstream: FakeUpstream
) -> None:
    module_upstream.rule("refuse me", Reply(status=400, json_body={"error": {"message": "no"}}))
    _, secret = key(priced)
    with priced.client(secret) as client:
        done = finished(
            client,
            *(chat(f"count me {i}", "fake-model") for i in range(3)),
            chat("refuse me", "fake-model"),
            chat("one two three", "echo"),
            chat("four five", "echo"),
        )
        assert [d["status"] for d in done] == ["COMPLETED"] * 3 + ["FAILED"] + ["COMPLETED"] * 2
        for response in (d["response"] for d in done[:3]):
            usage = response["usage"]
            expected = (usage["prompt_tokens"] * 2.0 + usage["completion_tokens"] * 8.0) / 1e6
            assert usage["cost"]["total_cost"] == pytest.approx(expected) and expected > 0
        by_model = client.get("/usage", params={**days_around_today(), "group_by": "model"})
        by_day = client.get("/usage", params={**days_around_today(), "group_by": "day"})
        for _ in range(3):  # reading again counts nothing again
            assert client.get("/usage", params={"group_by": "model"}).json() == by_model.json()
    assert by_model.status_code == 200, by_model.text

    def sums(results: list[dict[str, Any]], model: str) -> dict[str, Any]:
        usages = [r["response"]["usage"] for r in results if r["response"] is not None]
        return {
            "date": None,
            "model": model,
            "requests": len(results),
            **{
                f: sum(u[f] for u in usages)
                for f in ("prompt_tokens", "completion_tokens", "total_tokens")
            },
            "cost": pytest.approx(sum(u["cost"]["total_cost"] for u in usages)),
        }

    assert by_model.json() == {"data": [sums(done[4:], "echo"), sums(done[:4], "fake-model")]}
    days = by_day.json()["data"]
    assert sum(d["requests"] for d in days) == 6 and {d["model"] for d in days} == {None}
    assert sum(d["total_tokens"] for d in days) == sum(
        d["response"]["usage"]["total_tokens"] for d in done if d["response"]
    )


def test_usage_per_day_and_model_by_default(priced: ChatqServer) -> None:
    _, secret = key(priced)
    with priced.client(secret) as client:
        assert client.get("/usage").json() == {"data": []}, "a new owner has used nothing"
        (done,) = finished(client, chat("a b c", "echo"))
        data = client.get("/usage").json()["data"]
    usage = done["response"]["usage"]
    assert data == [
        {
            "date": datetime.fromtimestamp(done["completed_at"], UTC).date().isoformat(),
            "model": "echo",
            "requests": 1,
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "cost": 0.0,
        }
    ]
    day = data[0]["date"]
    with priced.client(secret) as client:
        assert client.get("/usage", params={"start": day, "end": day}).json()["data"] == data
        backwards = {"start": day, "end": "2000-01-01"}
        assert client.get("/usage", params=backwards).json() == {"data": []}, "an empty range"
        for edge in ({"end": "0001-01-01"}, {"start": "9999-12-31"}, {"end": "9999-12-31"}):
            assert client.get("/usage", params=edge).json() == {"data": []}, edge


def test_an_admin_key_reads_any_owners_usage_and_no_other_key_does(priced: ChatqServer) -> None:
    user, user_secret = key(priced)
    other, other_secret = key(priced)
    _, admin_secret = key(priced, "--admin")
    with priced.client(user_secret) as client:
        finished(client, chat("mine", "echo"))
        own = client.get("/usage", params={"owner": user})
        assert own.status_code == 200 and own.json()["data"][0]["requests"] == 1
        refused = client.get("/usage", params={"owner": other})
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {
            "message": "only an admin key may read another owner's usage",
            "type": "permission_denied",
            "code": 403,
        }
    }
    with priced.client(admin_secret) as client:
        assert client.get("/usage", params={"owner": user}).json() == own.json()
        assert client.get("/usage").json() == {"data": []}, "its own owner's, by default"
    with priced.client(other_secret) as client:
        assert client.get("/usage").json() == {"data": []}
    listed = run_cli("keys", "list", "--database", priced.database).stdout.splitlines()
    assert [line.endswith("admin") for line in listed if f"owner={user} " in line] == [False]
    assert sum(line.endswith("active  admin") for line in listed) == 1


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"start": "2026-02-30"}, 400, "start: '2026-02-30' is not a date (YYYY-MM-DD)"),
        ({"end": "1767225600"}, 422, "String should match pattern"),
        ({"start": "2026-1-1"}, 422, "String should match pattern"),
        ({"group_by": "week"}, 422, "Input should be 'model' or 'day'"),
        ({"owner": ""}, 422, "String should have at least 1 character"),
        ({"owner": "a\x00b"}, 422, "String should match pattern"),
    ],
)
def test_bad_input_gets_the_documented_errors(
    priced: ChatqServer, params: dict[str, str], status: int, error: str
) -> None:
    _, secret = key(priced)
    with priced.client(secret) as client:
        response = client.get("/usage", params=params)
    assert response.status_code == status, response.text
    if status == 400:
        body = response.json()["error"]
        assert body["type"] == "invalid_request" and body["code"] == 400
        assert body["message"].startswith(error)
    else:
        (detail,) = response.json()["detail"]
        assert detail["loc"][0] == "query" and detail["msg"].startswith(error)


def test_usage_needs_a_key(priced: ChatqServer) -> None:
    with httpx.Client(base_url=priced.base_url) as client:
        response = client.get("/usage")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_usage_is_in_the_openapi_document(priced: ChatqServer) -> None:
    with httpx.Client(base_url=priced.base_url) as client:
        document = client.get("/openapi.json").json()
    operation = document["paths"]["/usage"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert {p["name"] for p in operation["parameters"]} == {"start", "end", "group_by", "owner"}
    assert set(operation["responses"]) == {"200", "400", "401", "403", "422"}
    assert "UsageResponse" in document["components"]["schemas"]


def test_chatq_usage_prints_a_table(priced: ChatqServer, tmp_path: Path) -> None:
    owner, secret = key(priced)
    with priced.client(secret) as client:
        finished(client, chat("x y", "echo"), chat("z", "echo"))
    # A second owner's row, so the table for everyone has a total line whatever ran before.
    _, other = key(priced)
    with priced.client(other) as client:
        finished(client, chat("w", "echo"))
    db = ["--database", priced.database]
    mine = run_cli("usage", "--owner", owner, "--group-by", "model", *db)
    assert mine.returncode == 0, mine.stderr
    head, line = mine.stdout.splitlines()
    assert head.split() == ["model", "requests", "prompt", "completion", "total", "cost"]
    assert line.split() == ["echo", "2", "3", "3", "6", "0.000000"]
    everyone = run_cli("usage", "--since", str(datetime.now(UTC).date() - timedelta(1)), *db)
    assert everyone.returncode == 0, everyone.stderr
    lines = everyone.stdout.splitlines()
    assert lines[0].split()[:3] == ["owner", "date", "model"]
    assert any(line.split()[0] == owner for line in lines[1:])
    assert lines[-1].split()[0] == "total"
    bad = run_cli("usage", "--since", "yesterday", *db)
    assert bad.returncode == 2 and "'yesterday' is not a date (YYYY-MM-DD)" in bad.stderr
    earliest = run_cli("usage", "--until", "0001-01-01", *db)
    assert earliest.returncode == 0 and "no usage from 0001-01-01 to 0001-01-01" in earliest.stdout
