"""Upstream faults, injected by the fake upstream, on every dialect: transient ones are retried
and end COMPLETED once the upstream recovers, or FAILED naming the cause and the attempts when
retries run out; permanent ones fail at once with the upstream's message. The worker survives
all of them and leaves nothing IN_PROGRESS."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from chatq.backends.pool import BackendPool
from chatq.config import WorkerSettings
from chatq.domain import Job, Status
from chatq.store import Store
from tests.fakes.upstream import FakeUpstream, Reply, unused_port
from tests.integration.working import FAST, submit, upstream_backends, wait_for, worker_running
from tests.waiting import eventually_async

TIMEOUT_S = 0.5  # the backend's timeout_s in these tests
RETRYING = FAST.model_copy(update={"max_attempts": 3})
HTML = "<html><body><h1>Bad Gateway</h1></body></html>"

# name -> (the fault, words its error_message must contain)
TRANSIENT: dict[str, tuple[Reply, str]] = {
    "reset mid-body": (Reply(reset_after=20), "ClientPayloadError"),
    "read timeout": (Reply(delay_s=TIMEOUT_S + 0.5), f"no complete answer within {TIMEOUT_S:g}s"),
    "slow drip": (Reply(drip_s=TIMEOUT_S * 3), f"no complete answer within {TIMEOUT_S:g}s"),
    "408": (Reply(408, {"error": {"message": "request timeout"}}), "HTTP 408: request timeout"),
    "429 with Retry-After": (
        Reply(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "0"}),
        "HTTP 429: rate limited",
    ),
    "500 html": (Reply(500, raw_body=HTML), "HTTP 500"),
    "502 html": (Reply(502, raw_body=HTML), "Bad Gateway"),
    "503 html": (Reply(503, raw_body=HTML), "HTTP 503"),
    "200 malformed JSON": (Reply(raw_body='{"choices": [tru'), "not JSON"),
    "200 without choices": (
        Reply(json_body={"id": "x", "object": "chat.completion"}),
        "no choices",
    ),
}

PERMANENT: dict[str, tuple[Reply, str]] = {
    "400": (Reply(400, {"error": {"message": "messages: too long"}}), "messages: too long"),
    "401": (Reply(401, {"error": {"message": "bad upstream key"}}), "bad upstream key"),
    "403": (Reply(403, raw_body="forbidden by policy"), "forbidden by policy"),
    "404": (Reply(404, {"detail": "model not found"}), "model not found"),
    "422": (Reply(422, {"message": "temperature out of range"}), "temperature out of range"),
}


@pytest.fixture
async def fault_backends(upstream: FakeUpstream) -> AsyncIterator[BackendPool]:
    async with aclosing(upstream_backends(upstream.base_url, timeout_s=TIMEOUT_S)) as built:
        yield built


async def run_until_finished(
    store: Store, backends: BackendPool, job_id: str, settings: WorkerSettings = RETRYING
) -> Job:
    """Run a worker until the job is COMPLETED or FAILED; the same worker must then still run
    the next job. The finished job."""
    async with worker_running(store, backends, settings):
        (job,) = await wait_for(store, [job_id], Status.COMPLETED, Status.FAILED)
        after = await submit(store, "after the storm")
        (still,) = await wait_for(store, [after], Status.COMPLETED)
        assert still.status is Status.COMPLETED, "the worker survived"
    return job


async def submit_up(store: Store, content: str) -> str:
    """A job for model "up": the upstream the test scripted."""
    return await submit(store, content, model="up")


def assert_failed_saying(job: Job, *words: str) -> str:
    """The job FAILED with an error_message containing every one of the words: the message."""
    assert job.status is Status.FAILED, job.status
    assert job.error_message is not None
    for word in words:
        assert word in job.error_message, job.error_message
    return job.error_message


@pytest.mark.parametrize("fault", TRANSIENT, ids=list(TRANSIENT))
async def test_transient_fault_is_retried_until_the_upstream_recovers(
    live_store: Store, fault_backends: BackendPool, upstream: FakeUpstream, fault: str
) -> None:
    upstream.script(TRANSIENT[fault][0])
    job = await run_until_finished(live_store, fault_backends, await submit_up(live_store, fault))
    assert job.status is Status.COMPLETED, job.error_message
    assert job.response is not None
    assert job.response["choices"][0]["message"]["content"] == f"upstream: {fault}"
    assert upstream.call_count() == 2


@pytest.mark.parametrize("fault", TRANSIENT, ids=list(TRANSIENT))
async def test_transient_fault_that_persists_fails_naming_cause_and_attempts(
    live_store: Store, fault_backends: BackendPool, upstream: FakeUpstream, fault: str
) -> None:
    reply, cause = TRANSIENT[fault]
    upstream.script(*[reply] * RETRYING.max_attempts)
    job = await run_until_finished(live_store, fault_backends, await submit_up(live_store, fault))
    assert_failed_saying(job, f"gave up after {RETRYING.max_attempts} attempt(s)", cause)
    assert upstream.call_count() == RETRYING.max_attempts


@pytest.mark.parametrize("fault", PERMANENT, ids=list(PERMANENT))
async def test_permanent_fault_fails_at_once_with_the_upstreams_message(
    live_store: Store, fault_backends: BackendPool, upstream: FakeUpstream, fault: str
) -> None:
    reply, message = PERMANENT[fault]
    upstream.script(reply)
    job = await run_until_finished(live_store, fault_backends, await submit_up(live_store, fault))
    assert_failed_saying(job, f"HTTP {fault}", message)
    assert upstream.call_count() == 1, "not retried"


async def test_retry_after_is_honoured(
    live_store: Store, fault_backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"}))
    job_id = await submit_up(live_store, "patience")
    started = time.monotonic()
    # backoff_max_s caps Retry-After; FAST's 0.05 s cap would hide it.
    patient = RETRYING.model_copy(update={"backoff_max_s": 5.0})
    job = await run_until_finished(live_store, fault_backends, job_id, patient)
    assert job.status is Status.COMPLETED
    assert time.monotonic() - started >= 1.0


async def test_connection_refused_until_the_upstream_starts(
    live_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatq.worker")
    port = unused_port()  # nothing listens on it, yet
    patient = RETRYING.model_copy(update={"max_attempts": 100, "backoff_max_s": 0.2})
    job_id = await submit_up(live_store, "anyone there?")

    async def refused() -> int:
        return sum(f"job {job_id}: attempt" in r.getMessage() for r in caplog.records)

    refusing = upstream_backends(f"http://127.0.0.1:{port}/v1", timeout_s=TIMEOUT_S)
    async with aclosing(refusing) as backends, worker_running(live_store, backends, patient):
        (waiting,) = await wait_for(live_store, [job_id], Status.IN_PROGRESS)
        assert waiting.status is Status.IN_PROGRESS
        await eventually_async(refused, lambda n: n >= 2, what="a few refused attempts", timeout=10)
        with FakeUpstream(port=port) as late:
            (job,) = await wait_for(live_store, [job_id], Status.COMPLETED, Status.FAILED)
            assert job.status is Status.COMPLETED, job.error_message
            assert late.call_count() == 1


async def test_connection_refused_for_good_fails_naming_it(live_store: Store) -> None:
    refusing = upstream_backends(f"http://127.0.0.1:{unused_port()}/v1", timeout_s=TIMEOUT_S)
    job_id = await submit_up(live_store, "nobody")
    async with aclosing(refusing) as backends:
        job = await run_until_finished(live_store, backends, job_id)
    assert_failed_saying(job, "ClientConnectorError", "3 attempt(s)")


async def test_backend_max_concurrency_is_enforced(
    live_store: Store, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply(delay_s=0.3)] * 12)
    ids = [await submit_up(live_store, f"c{i}") for i in range(12)]
    many = FAST.model_copy(update={"concurrency": 50})
    capped = upstream_backends(upstream.base_url, max_concurrency=3)
    async with aclosing(capped) as backends, worker_running(live_store, backends, many):
        jobs = await wait_for(live_store, ids, Status.COMPLETED, Status.FAILED)
    assert [j.status for j in jobs] == [Status.COMPLETED] * 12
    assert upstream.peak_in_flight == 3


async def test_the_per_job_deadline_cuts_a_slow_call(
    live_store: Store, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(delay_s=3))
    job_id = await submit_up(live_store, "too slow")
    hasty = RETRYING.model_copy(update={"deadline_s": 0.5})
    async with aclosing(upstream_backends(upstream.base_url, timeout_s=30)) as backends:
        job = await run_until_finished(live_store, backends, job_id, hasty)
    # The deadline decided, not the backend's 30 s timeout_s.
    assert assert_failed_saying(job) == "deadline of 0.5s exceeded after 1 attempt(s)"


async def test_the_per_job_deadline_stops_retries_it_cannot_fit(
    live_store: Store, fault_backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(503, raw_body=HTML, headers={"Retry-After": "5"}))
    job_id = await submit_up(live_store, "come back later")
    patient = RETRYING.model_copy(update={"deadline_s": 2.0, "backoff_max_s": 10.0})
    job = await run_until_finished(live_store, fault_backends, job_id, patient)
    message = assert_failed_saying(job, "HTTP 503")
    assert message.startswith("deadline of 2s would pass before the next retry; 1 ")
    assert upstream.call_count() == 1
