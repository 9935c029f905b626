"""The worker against a real store (each dialect) and a fake upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatq.backends.base import TextSink
from chatq.backends.echo import EchoBackend
from chatq.backends.models import ModelTable
from chatq.backends.pool import BackendPool
from chatq.config import BackendConfig
from chatq.domain import JSON, Status
from chatq.store import Store
from tests.fakes.upstream import FakeUpstream, Reply
from tests.integration.stores import OWNER, Clock, complete_one, fresh_store
from tests.integration.working import FAST, submit, wait_for, worker_running
from tests.waiting import eventually_async


@pytest.fixture
def store(live_store: Store) -> Store:
    """Every dialect, on the real clock: these tests exercise real leases and timeouts."""
    return live_store


async def test_runs_jobs_oldest_first_to_completion(store: Store, backends: BackendPool) -> None:
    ids = [await submit(store, f"job {i}") for i in range(20)]
    async with worker_running(store, backends):
        jobs = await wait_for(store, ids, Status.COMPLETED)
    assert [j.status for j in jobs] == [Status.COMPLETED] * 20
    assert [j.response["choices"][0]["message"]["content"] for j in jobs if j.response] == [
        f"job {i}" for i in range(20)
    ]
    started = [j.started_at or 0.0 for j in jobs]
    assert started == sorted(started), "claimed oldest first"


async def test_wakes_at_once_on_submit(store: Store, backends: BackendPool) -> None:
    slow_poll = FAST.model_copy(update={"poll_interval_s": 30.0})
    async with worker_running(store, backends, slow_poll):
        await asyncio.sleep(0.1)  # the worker is idle, waiting for work
        job_id = await submit(store, "wake up")
        (job,) = await wait_for(store, [job_id], Status.COMPLETED, timeout=5)
    assert job.status is Status.COMPLETED, "woken by the submit, not by the 30 s poll"


async def test_concurrency_bounds_backend_calls(
    store: Store, backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply(delay_s=0.3) for _ in range(6)])
    ids = [await submit(store, f"slow {i}", model="up") for i in range(6)]
    upstream.reset_peak()
    async with worker_running(store, backends, FAST.model_copy(update={"concurrency": 2})):
        jobs = await wait_for(store, ids, Status.COMPLETED, timeout=15)
    assert [j.status for j in jobs] == [Status.COMPLETED] * 6
    assert upstream.peak_in_flight == 2
    assert upstream.call_count() == 6


async def test_leases_are_renewed_for_long_jobs(
    store: Store, backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(delay_s=2.5))  # 2.5 leases long
    job_id = await submit(store, "long", model="up")
    # The second worker would steal the job if a lease lapsed.
    async with worker_running(store, backends), worker_running(store, backends):
        (job,) = await wait_for(store, [job_id], Status.COMPLETED, timeout=15)
    assert job.status is Status.COMPLETED
    assert upstream.call_count() == 1, "never run twice"


async def test_a_dead_workers_job_is_rescued(store: Store, backends: BackendPool) -> None:
    job_id = await submit(store, "orphan")
    (claimed,) = await store.claim("ghost-worker-that-died", 1, lease_s=0.3)
    assert claimed.id == job_id
    async with worker_running(store, backends, FAST.model_copy(update={"lease_s": 0.3})):
        (job,) = await wait_for(store, [job_id], Status.COMPLETED, timeout=10)
    assert job.status is Status.COMPLETED
    assert not await complete_one(store, job_id, "ghost-worker-that-died", {}), (
        "the ghost comes too late"
    )


async def test_shutdown_finishes_in_flight_jobs_within_grace(
    store: Store, backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(delay_s=0.5))
    job_id = await submit(store, "finish me", model="up")
    async with worker_running(store, backends) as running:
        await wait_for(store, [job_id], Status.IN_PROGRESS)
        await running.shutdown()  # what is tested: the shutdown, mid-job
    job = await store.get(OWNER, job_id)
    assert job is not None and job.status is Status.COMPLETED


async def test_shutdown_hands_back_what_outlives_the_grace(
    store: Store, backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(delay_s=5))
    job_id = await submit(store, "too slow", model="up")
    async with worker_running(store, backends, FAST.model_copy(update={"grace_s": 0.2})) as running:
        await wait_for(store, [job_id], Status.IN_PROGRESS)
        await running.shutdown()  # what is tested: the shutdown, mid-job
    job = await store.get(OWNER, job_id)
    assert job is not None and job.status is Status.CREATED and job.started_at is None
    (again,) = await store.claim("next-worker", 1, lease_s=10)
    assert again.id == job_id and again.attempts == 1


class Exploding:
    name = "exploding"

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        raise KeyError("a bug in a backend")

    async def aclose(self) -> None:
        return None


async def test_a_backend_bug_fails_the_job_not_the_worker(
    store: Store, backends: BackendPool
) -> None:
    table = ModelTable(
        [
            BackendConfig(name="boom", type="echo", models=("boom",)),
            BackendConfig(name="echo", type="echo", models=("echo",)),
        ]
    )
    broken = BackendPool(table, {"boom": Exploding(), "echo": EchoBackend()})
    bad = await submit(store, "x", model="boom")
    good = await submit(store, "y")
    async with worker_running(store, broken):
        jobs = await wait_for(store, [bad, good], Status.COMPLETED, Status.FAILED)
    assert [j.status for j in jobs] == [Status.FAILED, Status.COMPLETED]
    assert jobs[0].error_message is not None and "KeyError" in jobs[0].error_message


async def test_deadline_fails_a_job_that_takes_too_long(
    store: Store, backends: BackendPool, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(delay_s=3))
    job_id = await submit(store, "deadline", model="up")
    async with worker_running(store, backends, FAST.model_copy(update={"deadline_s": 0.3})):
        (job,) = await wait_for(store, [job_id], Status.FAILED, timeout=10)
    assert job.status is Status.FAILED
    assert job.error_message is not None and "deadline of 0.3s exceeded" in job.error_message


async def test_retention_purges_old_results(
    dialect: str, tmp_path: Path, backends: BackendPool
) -> None:
    clock = Clock()
    async with fresh_store(dialect, tmp_path, clock) as store:
        old = await submit(store, "old")
        async with worker_running(store, backends, clock=clock):
            await wait_for(store, [old], Status.COMPLETED)
        clock.advance(8 * 86_400)
        recent = await submit(store, "recent")
        async with worker_running(store, backends, clock=clock):
            await wait_for(store, [recent], Status.COMPLETED)
            # The purge runs beside the claims, so it may come after the recent job is done.
            await eventually_async(
                lambda: store.get(OWNER, old),
                lambda job: job is None,
                what="the request finished 8 days ago purged",
                timeout=10,
            )
        assert await store.get(OWNER, recent) is not None
