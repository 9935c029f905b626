"""Shared pieces for tests that run a real worker against a real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import pytest

from chatq.backends.models import ModelTable
from chatq.backends.pool import BackendPool
from chatq.config import BackendConfig, WorkerSettings
from chatq.domain import Job, Status
from chatq.store import Store
from chatq.worker.worker import Worker
from tests.fakes.upstream import FakeUpstream
from tests.integration.stores import OWNER, fresh_store, new_request
from tests.waiting import eventually_async

FAST = WorkerSettings(
    lease_s=1.0, poll_interval_s=0.05, backoff_base_s=0.01, backoff_max_s=0.05, grace_s=5.0
)


@pytest.fixture
async def live_store(dialect: str, tmp_path: Path) -> AsyncIterator[Store]:
    """Every dialect, on the real clock: these tests exercise real leases and timeouts."""
    async with fresh_store(dialect, tmp_path) as opened:
        yield opened


def upstream_backends(base_url: str, **backend: object) -> BackendPool:
    """echo, and model "up" routed to an OpenAI-compatible upstream at base_url."""
    options: dict[str, object] = {"timeout_s": 10, **backend}
    return BackendPool.build(
        ModelTable(
            [
                BackendConfig(name="echo", type="echo", models=("echo",)),
                BackendConfig.model_validate(
                    {"name": "up", "type": "openai", "models": ["up"], "base_url": base_url}
                    | options
                ),
            ]
        )
    )


@pytest.fixture
async def backends(upstream: FakeUpstream) -> AsyncIterator[BackendPool]:
    async with aclosing(upstream_backends(upstream.base_url)) as built:
        yield built


async def submit(store: Store, content: str, model: str = "echo") -> str:
    job, _ = await store.submit(new_request(content, model=model))
    return job.id


async def wait_for(
    store: Store, ids: list[str], *statuses: Status, timeout: float = 15
) -> list[Job]:
    """The jobs, once every one of them is in one of the statuses."""

    async def jobs() -> list[Job | None]:
        return [await store.get(OWNER, i) for i in ids]

    found = await eventually_async(
        jobs,
        lambda got: all(j is not None and j.status in statuses for j in got),
        what=f"{len(ids)} job(s) to be {' or '.join(s.value for s in statuses)}",
        timeout=timeout,
        interval=0.02,
        show=lambda got: [j.status.value if j is not None else "missing" for j in got],
    )
    return [j for j in found if j is not None]


class Running:
    """A worker task with its stop event."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(worker.run(self.stop))

    async def shutdown(self, timeout: float = 20) -> None:
        """Stop claiming and drain within the grace period, waiting at most timeout seconds.
        Once is enough: a second call (as when a block shut its worker down itself) does
        nothing."""
        if self.stop.is_set():
            return
        self.stop.set()
        await asyncio.wait_for(self.task, timeout)


@asynccontextmanager
async def worker_running(
    store: Store,
    backends: BackendPool,
    settings: WorkerSettings = FAST,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Running]:
    """A worker running for the block, shut down (stop event, bounded wait) when it ends,
    however it ends."""
    running = Running(Worker(store, backends, settings, clock=clock))
    try:
        yield running
    finally:
        await running.shutdown()
