"""The two routes the dashboard added, on a real server, both dialects: a request as it was
submitted (GET .../{id}/request, owner-scoped), and the admin summary (GET /admin/summary,
admin keys only); and the dashboard's pages served without a key."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.acceptance.conftest import PATH, chat, wait_finished, wait_started
from tests.acceptance.test_http_errors import assert_error
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer, create_key

FAMILIES = (PATH, "/v1/async/sonar")


def test_the_request_as_submitted_with_its_attempts(
    server: ChatqServer, new_key: Callable[[], str]
) -> None:
    body = chat("as sent", temperature=0.25, search_domain_filter=["example.com"])
    with server.client(new_key()) as client:
        request_id = client.post(PATH, json=body).json()["id"]
        wait_finished(client, request_id)
        for family in FAMILIES:
            got = client.get(f"{family}/{request_id}/request")
            assert got.status_code == 200, got.text
            assert got.json() == {"id": request_id, "request": body["request"], "attempts": 1}
        assert_error(client.get(f"{PATH}/no-such-id/request"), 404, "not_found")
    with server.client(new_key()) as other:
        assert_error(other.get(f"{PATH}/{request_id}/request"), 404, "not_found")
    with server.client(None) as anonymous:
        assert_error(anonymous.get(f"{PATH}/{request_id}/request"), 401, "authentication_error")


def test_an_admin_key_reads_the_queue_and_every_owners_usage(
    server: ChatqServer, new_key: Callable[[], str], module_upstream: FakeUpstream
) -> None:
    module_upstream.rule("held for the summary", Reply(delay_s=60))
    owner = f"summary-{time.monotonic_ns()}"
    key = create_key(server.database, owner)
    with server.client(key) as client:
        wait_finished(client, client.post(PATH, json=chat("a b c")).json()["id"])
        held = client.post(PATH, json=chat("held for the summary", "fake-model", stream=True))
        held_id = held.json()["id"]
        wait_started(client, held_id)
        assert_error(client.get("/admin/summary"), 403, "permission_denied")
    admin = create_key(server.database, f"admin-{time.monotonic_ns()}", admin=True)
    try:
        with server.client(admin) as client:
            summary = client.get("/admin/summary")
            assert summary.status_code == 200, summary.text
            assert set(summary.json()) == {"queue", "usage"}
            running = [
                q
                for q in summary.json()["queue"]
                if (q["status"], q["model"]) == ("IN_PROGRESS", "fake-model")
            ]
            assert len(running) == 1 and running[0]["requests"] >= 1, summary.json()["queue"]
            mine = [u for u in summary.json()["usage"] if u["owner"] == owner]
            assert mine == [
                {
                    "owner": owner,
                    "model": "echo",
                    "requests": 1,
                    "prompt_tokens": 3,
                    "completion_tokens": 3,
                    "total_tokens": 6,
                    "cost": 0.0,
                }
            ]
            past = client.get("/admin/summary", params={"start": "2001-01-01", "end": "2001-01-31"})
            assert past.json()["usage"] == [], "the range is the query's"
            assert_error(
                client.get("/admin/summary", params={"start": "2026-02-30"}), 400, "invalid_request"
            )
    finally:
        with server.client(key) as client:
            client.post(f"{PATH}/{held_id}/cancel")
            assert wait_finished(client, held_id)["status"] == "FAILED"


def test_the_dashboard_pages_need_no_key(server: ChatqServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        for path in ("/ui", "/ui/signin", "/ui/requests/x", "/ui/static/app.js"):
            response = client.get(path)
            assert response.status_code == 200, path
        page = client.get('/ui/requests/"><img src=x onerror=y>')
    assert page.status_code == 200
    assert "<img" not in page.text, "the id is escaped into the page"
    assert 'data-request-id="&#34;&gt;&lt;img src=x onerror=y&gt;"' in page.text
