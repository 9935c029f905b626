"""Cancel across processes: it reaches the worker that holds the job, wherever it runs, and
it outlives that worker."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx

from tests.acceptance.conftest import PATH, chat
from tests.fakes.upstream import FakeUpstream, Reply
from tests.faults.conftest import Deployment
from tests.faults.events import QUESTION, Transcript, answer, submit_streamed
from tests.waiting import eventually

CANCELLED = "cancelled by the client"


def state(client: httpx.Client, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"{PATH}/{request_id}").json()
    return body


def test_cancel_reaches_the_worker_in_another_process(
    pg_deployment: Deployment, upstream: FakeUpstream
) -> None:
    deployment = pg_deployment
    api, worker = deployment.start_together(["api"], ["worker"])
    upstream.rule(QUESTION, Reply(pieces=50, token_delay_s=0.2))  # 10 s, unless stopped
    with api.client(deployment.key) as client:
        request_id = submit_streamed(client, QUESTION)
        # Read the stream until the worker's text shows up: the job is generating.
        seen = Transcript()
        assert (
            seen.follow(api, deployment.key, request_id, until=lambda t: t.count("delta") > 0)
            is None
        )
        assert upstream.call_count() == 1 and upstream.disconnect_count() == 0

        cancelled = client.post(f"{PATH}/{request_id}/cancel")
        sent = time.monotonic()
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "IN_PROGRESS", "the worker stops it, not the API"
        # The design says within a second; generously.
        eventually(
            upstream.disconnect_count,
            lambda n: n == 1,
            what="the upstream to see its caller hang up",
            timeout=5,
        )
        hung_up = time.monotonic() - sent
        failed = eventually(
            lambda: state(client, request_id),
            lambda body: body["status"] == "FAILED",
            what="the request FAILED",
            timeout=10,
        )
    assert failed["error_message"] == CANCELLED
    assert upstream.call_count() == 1
    assert f"job {request_id}: cancelled by the client; stopping it" in worker.log()
    # The text generated before the cancel stays readable on the event stream, for a
    # client that comes late.
    late = Transcript()
    assert late.follow(api, deployment.key, request_id) is None
    assert late.done is not None and late.done["status"] == "FAILED"
    whole = f"upstream: {QUESTION}"
    assert late.text and whole.startswith(late.text) and len(late.text) < len(whole), late.events
    print(
        f"\ncancel via the API of a job in another process: the upstream call closed within "
        f"{hung_up:.2f}s of the cancel's answer, {len(late.text)} of {len(whole)} characters made"
    )


def test_a_cancel_outlives_the_worker_that_held_the_job(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    api, doomed = deployment.start_together(["api"], ["worker"])
    # Streamed, the fake upstream notices its caller gone during the delay, and stops too.
    upstream.rule("cancel me", Reply(delay_s=30))
    with api.client(deployment.key) as client:
        request_id = submit_streamed(client, "cancel me")
        eventually(lambda: upstream.in_flight, lambda n: n == 1, what="the call", timeout=20)
        assert state(client, request_id)["status"] == "IN_PROGRESS"

        # Frozen, the worker can neither act on the cancel nor renew its lease; then killed.
        assert doomed.proc is not None
        os.kill(doomed.proc.pid, signal.SIGSTOP)
        cancelled = client.post(f"{PATH}/{request_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "IN_PROGRESS"
        doomed.stop(signal.SIGKILL)

        deployment.start("worker")  # rescues the job once its lease has expired
        failed = eventually(
            lambda: state(client, request_id),
            lambda body: body["status"] != "IN_PROGRESS",
            what="the request to leave IN_PROGRESS",
            timeout=20,
        )
        assert failed["status"] == "FAILED" and failed["error_message"] == CANCELLED
        # The new worker does claim work: a request submitted after is served; the
        # cancelled one was never run again.
        after = client.post(PATH, json=chat("after", "fake-model")).json()["id"]
        done = eventually(
            lambda: state(client, after),
            lambda body: body["status"] == "COMPLETED",
            what="the next request COMPLETED",
            timeout=20,
        )
    assert answer(done) == "upstream: after"
    asked = [call["messages"][-1]["content"] for call in upstream.calls]
    assert asked == ["cancel me", "after"], "the cancelled job ran once, never again"
