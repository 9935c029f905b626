"""The worker's deliverer against a real store and a real receiver on 127.0.0.1: while the
job queue is backlogged, it claims deliveries only on its turns, after a job claim."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

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


async def test_while_jobs_are_backlogged_deliveries_wait_for_job_claims(
    live_store: Store, receiver: Receiver
) -> None:
    await finish_with_webhooks(live_store, receiver.url(), EVENTS)
    settings = WebhookSettings(allow_private_networks=True, per_owner_concurrency=PER_TURN)
    # A turn never comes by itself within the test: only jobs_claimed gives one.
    deliverer = Deliverer(live_store, settings, "w1", busy_turn_s=3600)
    deliverer.jobs_claimed(backlogged=True)
    stop = asyncio.Event()
    running = asyncio.create_task(deliverer.run(stop))
    try:
        await asyncio.sleep(0.3)
        assert receiver.to("/hook") == [], "no delivery before the next job claim"

        deliverer.jobs_claimed(backlogged=True)
        await arrived(receiver, PER_TURN)
        await asyncio.sleep(0.3)
        assert len(receiver.to("/hook")) == PER_TURN, "one claim per job claim"

        deliverer.jobs_claimed(backlogged=False)
        await arrived(receiver, EVENTS)
    finally:
        stop.set()
        await running
