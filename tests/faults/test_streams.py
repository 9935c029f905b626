"""Event streams under kill -9, on real processes and both stores: of the API process that
serves a stream (the client resumes on another with Last-Event-ID), and of the worker that
generates it (the client is told the text restarted, and the rerun's text is the answer)."""

from __future__ import annotations

import signal

import httpx

from tests.acceptance.conftest import PATH
from tests.fakes.upstream import FakeUpstream, Reply
from tests.faults.conftest import Deployment
from tests.faults.events import QUESTION, Transcript, answer, submit_streamed
from tests.waiting import eventually


def test_kill_9_of_the_api_process_holding_an_event_stream(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    a, b, _ = deployment.start_together(["api"], ["api"], ["worker"])
    upstream.rule(QUESTION, Reply(pieces=30, token_delay_s=0.1))  # about 3 s of text
    with a.client(deployment.key) as client:
        request_id = submit_streamed(client, QUESTION)

    seen = Transcript()

    def kill_a_mid_stream(t: Transcript) -> None:
        if t.count("delta") == 3:
            a.stop(signal.SIGKILL)

    broken = seen.follow(a, deployment.key, request_id, kill_a_mid_stream)
    assert isinstance(broken, httpx.TransportError), "A died with the stream open"
    assert seen.done is None
    from_a = seen.count("delta")

    assert seen.follow(b, deployment.key, request_id) is None, "B served the rest to the end"
    assert seen.done is not None
    final = answer(seen.done)
    assert final == f"upstream: {QUESTION}"
    assert seen.count("delta") > from_a, "B sent what A had not"
    assert seen.run == 1 and list(seen.texts) == [1]
    assert seen.text == final, "no gap, no repeat"
    assert upstream.call_count() == 1
    print(
        f"\nkill -9 of the API mid-stream: {from_a} deltas from A, "
        f"{seen.count('delta') - from_a} from B, {len(final)} characters, exact"
    )


def test_kill_9_of_the_worker_generating_a_stream(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    api, doomed = deployment.start_together(["api"], ["worker"])
    upstream.rule(QUESTION, Reply(pieces=30, token_delay_s=0.1))
    with api.client(deployment.key) as client:
        request_id = submit_streamed(client, QUESTION)

    seen = Transcript()

    def kill_the_worker_mid_stream(t: Transcript) -> None:
        if t.count("delta") == 2 and doomed.proc is not None and doomed.proc.poll() is None:
            doomed.stop(signal.SIGKILL)
            upstream.rule(QUESTION, Reply(pieces=20, token_delay_s=0.05))
            deployment.start("worker")  # reruns the job once its lease expires

    assert seen.follow(api, deployment.key, request_id, kill_the_worker_mid_stream) is None
    assert seen.done is not None
    final = answer(seen.done)
    assert final == f"upstream: {QUESTION}"
    restarts = [e.data for e in seen.events if e.kind == "status" and e.data["run"] == 2]
    assert restarts, "the client was told the text restarted"
    first = seen.texts[1]
    assert first and final.startswith(first), "run 1's text, as far as it went"
    assert len(first) < len(final), "the worker died mid-stream"
    assert seen.run == 2 and seen.text == final, "after the restart: exactly the answer"
    assert upstream.call_count() == 2
    print(
        f"\nkill -9 of the worker mid-stream: {len(first)} characters of run 1 dropped, "
        f"run 2 delivered {len(final)} characters exactly"
    )


def test_a_client_that_saw_the_request_waiting_resumes_after_it_ran(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    a, b = deployment.start_together(["api"], ["api"])  # no worker yet: the request waits
    upstream.rule(QUESTION, Reply(pieces=5))
    with a.client(deployment.key) as client:
        request_id = submit_streamed(client, QUESTION)

    seen = Transcript()

    def kill_a_once_it_said_waiting(t: Transcript) -> None:
        assert t.events[-1].kind == "status" and t.events[-1].data["status"] == "CREATED"
        a.stop(signal.SIGKILL)

    assert isinstance(
        seen.follow(a, deployment.key, request_id, kill_a_once_it_said_waiting),
        httpx.TransportError,
    )
    assert seen.run == 0 and seen.count("status") == 1

    deployment.start("worker")  # runs the whole request while the client is away
    with b.client(deployment.key) as client:
        eventually(
            lambda: client.get(f"{PATH}/{request_id}").json()["status"],
            lambda status: status == "COMPLETED",
            what="the request COMPLETED",
            timeout=20,
        )
    resumed_at = len(seen.events)
    assert seen.follow(b, deployment.key, request_id) is None
    assert seen.done is not None
    resumed = seen.events[resumed_at:]
    # A run's text never comes before its status: the client learns the run first.
    assert resumed[0].kind == "status" and resumed[0].data["run"] == 1, resumed
    assert seen.text == answer(seen.done) == f"upstream: {QUESTION}"
