"""kill -9 and SIGTERM on real chatq processes, on SQLite and PostgreSQL: nothing acknowledged
is lost, every job ends in exactly one terminal state, nothing stays IN_PROGRESS."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.acceptance.conftest import PATH, chat
from tests.fakes.upstream import FakeUpstream, Reply
from tests.faults.conftest import Deployment, all_completed, statuses
from tests.waiting import eventually

JOBS = 10


def submit(client: httpx.Client, content: str) -> str:
    """A request for fake-model, which the fake upstream serves: its id."""
    request_id: str = client.post(PATH, json=chat(content, "fake-model")).json()["id"]
    return request_id


def test_kill_9_of_a_worker_mid_job(deployment: Deployment, upstream: FakeUpstream) -> None:
    api = deployment.start("api")
    doomed = deployment.start("worker")
    for i in range(JOBS):
        upstream.rule(f"job {i}", Reply(delay_s=30))  # still running when the worker dies
    with api.client(deployment.key) as client:
        ids = [submit(client, f"job {i}") for i in range(JOBS)]
        eventually(
            lambda: upstream.in_flight, lambda n: n == JOBS, what="every job in flight", timeout=30
        )
        doomed.stop(signal.SIGKILL)
        for i in range(JOBS):
            upstream.rule(f"job {i}", None)  # the upstream answers at once from now on
        deployment.start("worker")
        first = all_completed(client, ids, "every job COMPLETED by the second worker")
        time.sleep(1.5)  # a lease's length: nothing may change a finished job any more
        assert statuses(client, ids) == first, "exactly one visible terminal state"
        listed = [r["id"] for r in client.get(PATH, params={"limit": 100}).json()["requests"]]
    assert sorted(listed) == sorted(ids), "none lost, each listed once"
    for i, request_id in enumerate(ids):
        assert (
            first[request_id]["response"]["choices"][0]["message"]["content"]
            == f"upstream: job {i}"
        )
    duplicates = upstream.call_count() - JOBS
    print(
        f"\nkill -9 of a worker with {JOBS} jobs in flight: {duplicates} duplicate upstream calls"
    )
    assert duplicates == JOBS, "each in-flight job ran once more, and only once more"


def test_kill_9_of_the_api_during_a_burst(deployment: Deployment) -> None:
    server = deployment.start("serve")
    acked: dict[str, str] = {}
    lock = threading.Lock()

    def submitter(n: int) -> None:
        with server.client(deployment.key) as client:
            for i in range(10_000):  # bounded; ends when the server dies
                content = f"burst {n}-{i}"
                try:
                    response = client.post(PATH, json=chat(content))
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    with lock:
                        acked[response.json()["id"]] = content

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    eventually(lambda: len(acked), lambda n: n >= 200, what="200 acknowledged submits", timeout=30)
    server.stop(signal.SIGKILL)
    for t in threads:
        t.join(timeout=30)

    again = deployment.start("serve")
    with again.client(deployment.key) as client:
        ids = list(acked)
        done = all_completed(client, ids, "every acknowledged request COMPLETED after the restart")
        for request_id, state in done.items():
            # echo answers with the request's own message: the request came back intact.
            assert state["response"]["choices"][0]["message"]["content"] == acked[request_id]
    print(f"\nkill -9 of the API: {len(acked)} acknowledged requests, all present after restart")


def test_sigterm_on_a_worker_finishes_what_it_can_and_hands_back_the_rest(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    api = deployment.start("api")
    worker = deployment.start("worker")
    for i in range(3):
        upstream.rule(f"quick {i}", Reply(delay_s=0.5))  # done within the 1 s grace
        upstream.rule(f"slow {i}", Reply(delay_s=30))  # not done within it
    with api.client(deployment.key) as client:
        quick = [submit(client, f"quick {i}") for i in range(3)]
        slow = [submit(client, f"slow {i}") for i in range(3)]
        eventually(
            lambda: upstream.in_flight, lambda n: n == 6, what="all six in flight", timeout=30
        )
        started = time.monotonic()
        assert worker.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
        after = statuses(client, quick + slow)
        assert [after[i]["status"] for i in quick] == ["COMPLETED"] * 3
        assert [after[i]["status"] for i in slow] == ["CREATED"] * 3, "handed back, not stuck"
        assert "handed 3 unfinished job(s) back" in worker.log()

        for i in range(3):
            upstream.rule(f"slow {i}", None)
        deployment.start("worker")
        all_completed(client, slow, "the handed-back jobs COMPLETED by the next worker")
