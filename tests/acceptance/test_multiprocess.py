"""Past one machine: 2 `chatq api` and 3 `chatq worker` processes on one PostgreSQL database.
2,000 requests through HTTP; every one COMPLETED, none lost, each listed exactly once."""

from __future__ import annotations

import itertools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.acceptance.conftest import PATH, chat, pages, write_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, create_key, run_cli
from tests.pg import temporary_database_sync
from tests.waiting import eventually

REQUESTS = 2000


def test_two_apis_three_workers_one_database(tmp_path: Path, upstream: FakeUpstream) -> None:
    config = str(write_config(tmp_path / "chatq.toml", upstream.base_url))
    env = {"FAKE_UPSTREAM_KEY": "k"}
    with temporary_database_sync() as url:
        assert run_cli("migrate", "--database", url).returncode == 0
        key = create_key(url, "load")
        common = ("--database", url, "--config", config)
        apis = [ChatqServer(tmp_path, *common, command="api", env=env) for _ in range(2)]
        workers = [ChatqServer(tmp_path, *common, command="worker", env=env) for _ in range(3)]
        started: list[ChatqServer] = []
        try:
            for process in (*apis, *workers):
                started.append(process.start())
            ids = submit_all(apis, key)
            assert len(set(ids)) == REQUESTS
            listed = wait_all_completed(apis[0], key, timeout=180)
        finally:
            codes = [p.stop() for p in started]
        assert all(code in (0, -15) for code in codes), [p.log()[-2000:] for p in started]

    assert Counter(listed) == Counter({i: 1 for i in ids}), "each request listed exactly once"
    asked = Counter(call["messages"][0]["content"] for call in upstream.calls)
    assert set(asked) == {f"n{i}" for i in range(REQUESTS)}, "every request reached upstream"
    duplicates = sum(n - 1 for n in asked.values())
    print(f"\n{REQUESTS} requests, {len(upstream.calls)} upstream calls, {duplicates} duplicates")
    assert duplicates == 0, "without crashes no job runs twice"


def submit_all(apis: list[ChatqServer], key: str) -> list[str]:
    clients = [api.client(key) for api in apis]
    counter = itertools.count()

    def submit(n: int) -> str:
        client = clients[next(counter) % len(clients)]
        response = client.post(PATH, json=chat(f"n{n}", "fake-model"))
        assert response.status_code == 200, response.text
        request_id: str = response.json()["id"]
        return request_id

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(submit, range(REQUESTS)))
    finally:
        for client in clients:
            client.close()


def wait_all_completed(api: ChatqServer, key: str, timeout: float) -> list[str]:
    """Walk all pages until every request is COMPLETED; return the ids of the last walk."""
    with api.client(key) as client:
        listed, _ = eventually(
            lambda: walk(client),
            lambda walked: walked[1] == Counter({"COMPLETED": REQUESTS}),
            what=f"all {REQUESTS} requests listed COMPLETED",
            timeout=timeout,
            interval=0.5,
            show=lambda walked: walked[1],
        )
    return listed


def walk(client: httpx.Client) -> tuple[list[str], Counter[str]]:
    """The ids on all pages, and how many of them are in each status."""
    rows = [row for page in pages(client, 500, most=REQUESTS) for row in page["requests"]]
    return [row["id"] for row in rows], Counter(row["status"] for row in rows)
