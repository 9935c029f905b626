"""GET /metrics on the real processes, read with prometheus_client's parser: `chatq serve`
counts its jobs and HTTP requests (by route template); `chatq api` reports the queue depth
from the store; a worker alone serves its own metrics on --metrics-port; with
metrics_require_key both want a valid key; no label is ever an owner, a key or a request id."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import PATH, UPSTREAM_KEY, chat, wait_finished, write_config
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer, create_key, database_url, run_cli
from tests.scrape import Samples, label_values, scrape, value
from tests.waiting import eventually

WORKER_METRICS = "chatq worker metrics on "


def delta(before: Samples, after: Samples, name: str, labels: dict[str, str]) -> float:
    return value(after, name, labels) - value(before, name, labels)


def test_serve_counts_jobs_upstream_calls_and_http_requests_by_route(
    server: ChatqServer, module_upstream: FakeUpstream
) -> None:
    owner = f"metrics-owner-{time.monotonic_ns()}"
    key = create_key(server.database, owner)
    url = f"{server.base_url}/metrics"
    before = scrape(url)
    with server.client(key) as client:
        ids = [client.post(PATH, json=chat(f"count me {i}")).json()["id"] for i in range(5)]
        for request_id in ids:
            assert wait_finished(client, request_id)["status"] == "COMPLETED"
        module_upstream.script(Reply(400, {"error": {"message": "refused"}}))
        failing = client.post(PATH, json=chat("refuse me", "fake-model")).json()["id"]
        assert wait_finished(client, failing)["status"] == "FAILED"
        assert client.get(f"/v1/async/sonar/{ids[0]}").status_code == 200
    after = scrape(url)

    jobs = "chatq_jobs_total"
    assert delta(before, after, jobs, {"model": "echo", "outcome": "completed"}) == 5
    assert delta(before, after, jobs, {"model": "fake-model", "outcome": "failed"}) == 1
    upstream = {"backend": "fake", "class": "4xx"}
    assert delta(before, after, "chatq_upstream_calls_total", upstream) == 1
    wait = "chatq_job_queue_wait_seconds_count"
    assert delta(before, after, wait, {"model": "echo"}) == 5

    http = "chatq_http_request_duration_seconds_count"
    created = {"route": PATH, "method": "POST", "status": "200"}
    assert delta(before, after, http, created) == 6
    by_id = {"route": "/v1/async/sonar/{api_request}", "method": "GET", "status": "200"}
    assert delta(before, after, http, by_id) == 1
    routes = {
        v for (name, labels), _ in after.items() if name == http for k, v in labels if k == "route"
    }
    assert f"{PATH}/{{api_request}}" in routes, "wait_finished polled by id"

    secrets = {owner, key, *ids, failing}
    leaked = {v for v in label_values(after) if any(s in v for s in secrets)}
    assert not leaked, leaked


def test_unmatched_paths_and_methods_are_not_labels(server: ChatqServer) -> None:
    url = f"{server.base_url}/metrics"
    with httpx.Client(base_url=server.base_url) as client:
        assert client.get("/no/such/path-4f1d2c").status_code == 404
        # PROPFIND: a method the HTTP parser (httptools) knows, so that it reaches the app;
        # one it does not know (BREW) is a 400 from the parser, before any route or metric.
        assert client.request("PROPFIND", "/healthz").status_code in (404, 405)
    values = label_values(scrape(url))
    assert "unmatched" in values
    assert not {v for v in values if "4f1d2c" in v or v == "PROPFIND"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_api_reports_the_queue_and_a_worker_alone_serves_its_metrics(
    dialect: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = write_config(tmp_path / "chatq.toml", upstream.base_url)
    with database_url(dialect, tmp_path) as db:
        assert run_cli("migrate", "--database", db).returncode == 0
        key = create_key(db, "operator")
        common = ("--database", db, "--config", str(config), "--metrics-require-key")
        env = {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
        api = ChatqServer(tmp_path, *common, command="api", env=env).start()
        worker = ChatqServer(tmp_path, *common, "--metrics-port", "0", command="worker", env=env)
        try:
            api_metrics = f"{api.base_url}/metrics"
            refused = httpx.get(api_metrics, timeout=10)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["type"] == "authentication_error"
            with api.client(key) as client:
                ids = [client.post(PATH, json=chat(f"queued {i}")).json()["id"] for i in range(4)]
            eventually(
                lambda: scrape(api_metrics, key),
                lambda got: value(got, "chatq_queue_depth", {"status": "CREATED"}) == 4,
                what="the API to report 4 queued requests",
                timeout=15,
                show=lambda got: {k: v for k, v in got.items() if k[0] == "chatq_queue_depth"},
            )

            worker.start()
            (line,) = [x for x in worker.stdout_lines if x.startswith(WORKER_METRICS)]
            worker_metrics = line[len(WORKER_METRICS) :]
            assert worker_metrics.startswith("http://127.0.0.1:"), "loopback by default"
            assert httpx.get(worker_metrics, timeout=10).status_code == 401
            completed = {"model": "echo", "outcome": "completed"}
            ran = eventually(
                lambda: scrape(worker_metrics, key),
                lambda got: value(got, "chatq_jobs_total", completed) == 4,
                what="the worker to count its 4 jobs",
                timeout=20,
            )
            assert not any(name.startswith("chatq_http_") for name, _ in ran), "no HTTP side"
            delivered = ("chatq_webhook_deliveries_total", frozenset({("outcome", "delivered")}))
            assert ran.get(delivered) == 0, "a worker's series start at zero"
            eventually(
                lambda: scrape(api_metrics, key),
                lambda got: value(got, "chatq_queue_depth", {"status": "CREATED"}) == 0,
                what="the API to see the queue drained",
                timeout=15,
            )
            api_side = scrape(api_metrics, key)
            assert value(api_side, "chatq_jobs_total", completed) == 0, "the API runs no job"
            assert not {v for v in label_values(ran) | label_values(api_side) if v in ids}
        finally:
            codes = {api.stop(), worker.stop() if worker.proc is not None else 0}
        assert codes <= {0, -15}, (api.log()[-2000:], worker.log()[-2000:])
