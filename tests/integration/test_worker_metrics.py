"""A worker's metrics move as its jobs run: each upstream call is counted in its class, each
retry, each job's outcome, wait and run time; nothing is left in flight. The faults come from
the fake upstream, as in test_upstream_faults.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from chatq.backends.pool import BackendPool
from chatq.domain import Status
from chatq.store import Store
from tests.fakes.upstream import FakeUpstream, Reply
from tests.integration.stores import OWNER
from tests.integration.working import FAST, submit, upstream_backends, wait_for, worker_running
from tests.scrape import Samples, this_process, value
from tests.waiting import eventually_async

TIMEOUT_S = 0.5
# One job meets every class of failure in turn, then a 400 that fails it for good.
FAULTS = {
    "5xx": Reply(503, {"error": {"message": "overloaded"}}),
    "4xx": Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
    "timeout": Reply(delay_s=TIMEOUT_S + 0.5),
    "connection": Reply(reset_after=20),
    "invalid": Reply(raw_body='{"choices": [tru'),
}
PERMANENT = Reply(400, {"error": {"message": "bad request"}})


@pytest.fixture
async def fault_backends(upstream: FakeUpstream) -> AsyncIterator[BackendPool]:
    async with aclosing(upstream_backends(upstream.base_url, timeout_s=TIMEOUT_S)) as built:
        yield built


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, labels) - value(before, name, labels)


def calls(before: Samples, after: Samples, kind: str, backend: str = "up") -> float:
    """Backend calls of the class made between the two scrapes."""
    labels = {"backend": backend, "class": kind}
    name = "chatq_upstream_calls_total"
    return value(after, name, labels) - value(before, name, labels)


async def in_flight() -> float:
    return value(this_process(), "chatq_upstream_in_flight", {"backend": "up"})


async def test_upstream_classes_retries_and_job_outcomes_are_counted(
    live_store: Store, fault_backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(*FAULTS.values(), PERMANENT)
    settings = FAST.model_copy(update={"max_attempts": len(FAULTS) + 1})
    before = this_process()
    failing = await submit(live_store, "meets every fault", model="up")
    async with worker_running(live_store, fault_backends, settings):
        (failed,) = await wait_for(live_store, [failing], Status.FAILED, Status.COMPLETED)
        fine = await submit(live_store, "then all is well", model="up")
        echoed = await submit(live_store, "and echo too")
        done = await wait_for(live_store, [fine, echoed], Status.COMPLETED, Status.FAILED)
    after = this_process()

    assert failed.status is Status.FAILED and "bad request" in (failed.error_message or "")
    assert [job.status for job in done] == [Status.COMPLETED, Status.COMPLETED]
    # Each fault once, the 400 as a second 4xx, and the job that went well.
    expected = {**dict.fromkeys(FAULTS, 1), "4xx": 2, "2xx": 1}
    assert {kind: calls(before, after, kind) for kind in expected} == expected
    assert calls(before, after, "2xx", backend="echo") == 1
    assert delta(before, after, "chatq_upstream_retries_total", backend="up") == len(FAULTS)
    assert value(after, "chatq_upstream_in_flight", {"backend": "up"}) == 0
    jobs = "chatq_jobs_total"
    assert delta(before, after, jobs, model="up", outcome="failed") == 1
    assert delta(before, after, jobs, model="up", outcome="completed") == 1
    assert delta(before, after, jobs, model="echo", outcome="completed") == 1
    for histogram in ("chatq_job_queue_wait_seconds", "chatq_job_run_seconds"):
        assert delta(before, after, f"{histogram}_count", model="up") == 2
        assert delta(before, after, f"{histogram}_count", model="echo") == 1
    ran = delta(before, after, "chatq_job_run_seconds_sum", model="up")
    assert ran >= TIMEOUT_S, "the timed-out attempt alone took the backend's timeout_s"


async def test_a_cancelled_job_is_counted_as_cancelled_and_its_call_is_not(
    live_store: Store, fault_backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(delay_s=10))
    before = this_process()
    job_id = await submit(live_store, "stop me", model="up")
    async with worker_running(live_store, fault_backends):
        await wait_for(live_store, [job_id], Status.IN_PROGRESS)
        await eventually_async(in_flight, lambda n: n == 1, what="the call", timeout=5)
        await live_store.cancel(OWNER, job_id)
        (job,) = await wait_for(live_store, [job_id], Status.FAILED)
    after = this_process()
    assert job.status is Status.FAILED
    assert delta(before, after, "chatq_jobs_total", model="up", outcome="cancelled") == 1
    assert (
        sum(calls(before, after, kind) for kind in ("2xx", "4xx", "5xx", "timeout", "connection"))
        == 0
    )
    assert value(after, "chatq_upstream_in_flight", {"backend": "up"}) == 0
