"""PostgreSQL stopped and restarted under load: the API answers 503 in the documented shape
while it is down, API and workers recover by themselves, nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import PATH, chat, write_config
from tests.fakes.upstream import FakeUpstream
from tests.faults.conftest import Deployment, all_completed, statuses
from tests.faults.private_postgres import PrivatePostgres
from tests.waiting import eventually


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


def test_postgres_outage_under_load(
    private_postgres: PrivatePostgres, tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = write_config(tmp_path / "chatq.toml", upstream.base_url, lease_s=2.0)
    deployment = Deployment(tmp_path, private_postgres.url, config)
    try:
        api = deployment.start("api")
        deployment.start("worker")
        acked: dict[str, str] = {}
        unavailable: list[httpx.Response] = []
        stop = threading.Event()
        lock = threading.Lock()

        def submitter(n: int) -> None:
            with api.client(deployment.key) as client:
                for i in range(100_000):  # bounded; stopped by the test
                    if stop.is_set():
                        return
                    content = f"load {n}-{i}"
                    response = client.post(PATH, json=chat(content))
                    with lock:
                        if response.status_code == 200:
                            acked[response.json()["id"]] = content
                        else:
                            unavailable.append(response)
                    time.sleep(0.01)

        threads = [threading.Thread(target=submitter, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            eventually(
                lambda: len(acked),
                lambda n: n >= 50,
                what="acknowledged submits before the outage",
                timeout=30,
            )
            private_postgres.stop()
            eventually(
                lambda: len(unavailable),
                lambda n: n >= 20,
                what="503s during the outage",
                timeout=30,
            )
            with httpx.Client(base_url=api.base_url) as plain:
                ready = plain.get("/readyz")
            down_acked = len(acked)
            time.sleep(1.0)
            private_postgres.start()
            eventually(
                lambda: len(acked),
                lambda n: n >= down_acked + 50,
                what="submits accepted again",
                timeout=30,
            )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

        assert ready.status_code == 503
        assert all(r.status_code == 503 for r in unavailable), {r.status_code for r in unavailable}
        for response in unavailable:
            body = response.json()
            assert body["error"]["type"] == "unavailable" and body["error"]["code"] == 503
        with api.client(deployment.key) as client:
            ids = list(acked)
            try:
                done = all_completed(
                    client, ids, "every acknowledged request COMPLETED after the outage", 60
                )
            except AssertionError as timed_out:
                left = [s for s in statuses(client, ids).values() if s["status"] != "COMPLETED"]
                raise AssertionError(
                    f"{timed_out}\n{len(left)} not COMPLETED: {left[:3]}\n"
                    f"{deployment.processes[1].log()[-4000:]}"
                ) from None
            for request_id, state in done.items():
                assert state["response"]["choices"][0]["message"]["content"] == acked[request_id]
        print(f"\nPostgreSQL outage: {len(acked)} acknowledged, {len(unavailable)} answered 503")
    finally:
        deployment.stop_all()
