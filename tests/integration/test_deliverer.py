"""The worker's deliverer against a real store and a real receiver on 127.0.0.1: while the
worker's jobs are busy, it claims deliveries only once per turn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from chatq.config import WebhookSettings
from chatq.domain import NewRequest
from chatq.store import Store
from chatq.worker.webhooks import Deliverer
from tests.fakes.receiver import Receiver, receiving
from tests.integration.stores import OWNER
from tests.waiting import eventually_async

EVENTS = 12
PER_TURN = 3  # per_owner_concurrency: one owner's share of a claim


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


async def finish_with_webhooks(store: Store, url: str, count: int) -> None:
    for i in range(count):
        request = {"model": "echo", "messages": [{"role": "user", "content": f"job {i}"}]}
        await store.submit(NewRequest.create(OWNER, request, webhook_url=url, webhook_named=True))
    claimed = await store.claim("w1", count, 30.0)
    assert len(await store.complete_many("w1", [(job.id, {}) for job in claimed])) == count


async def arrived(receiver: Receiver, count: int) -> None:
    async def events() -> int:
        return len(receiver.to("/hook"))

    await eventually_async(
        events, lambda n: n == count, what=f"{count} events at the receiver", timeout=20
    )


@dataclass
class Jobs:
    busy: bool = True


@contextlib.asynccontextmanager
async def delivering(store: Store, jobs: Jobs, busy_turn_s: float) -> AsyncIterator[None]:
    """A deliverer running beside jobs as busy as jobs.busy says, until the block ends."""
    settings = WebhookSettings(allow_private_networks=True, per_owner_concurrency=PER_TURN)
    deliverer = Deliverer(
        store, settings, "w1", jobs_busy=lambda: jobs.busy, busy_turn_s=busy_turn_s
    )
    stop = asyncio.Event()
    running = asyncio.create_task(deliverer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await running


async def test_while_jobs_are_busy_deliveries_wait_a_turn(
    live_store: Store, receiver: Receiver
) -> None:
    await finish_with_webhooks(live_store, receiver.url(), EVENTS)
    jobs = Jobs(busy=True)
    async with delivering(live_store, jobs, busy_turn_s=0.5):
        # Timers fire in deadline order: this sleep ends before the deliverer's first turn.
        await asyncio.sleep(0.3)
        assert receiver.to("/hook") == [], "no delivery before the deliverer's turn"
        jobs.busy = False
        await arrived(receiver, EVENTS)


async def test_busy_jobs_do_not_stop_deliveries(live_store: Store, receiver: Receiver) -> None:
    await finish_with_webhooks(live_store, receiver.url(), EVENTS)
    async with delivering(live_store, Jobs(busy=True), busy_turn_s=0.05):
        await arrived(receiver, EVENTS)
