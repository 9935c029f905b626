"""PostgreSQL only: LISTEN/NOTIFY wakes idle workers; when the listening connection drops,
waits fall back to polling and the listener comes back by itself; the outbox notifies once
per statement that queues deliveries, and never for one that queues none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from chatq.domain import NewRequest
from chatq.store.postgres.store import PostgresStore
from tests.integration.stores import OWNER, new_request
from tests.pg import temporary_database
from tests.waiting import eventually_async

HOOK = "https://receiver.example/hook"


@pytest.fixture
async def pg() -> AsyncIterator[tuple[PostgresStore, str]]:
    async with temporary_database() as url:
        store = await PostgresStore.open(url)
        await store.migrate()
        try:
            yield store, url
        finally:
            await store.close()


async def listener_pids(url: str) -> list[int]:
    """The store's listening connections, as PostgreSQL sees them."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            # Its last statement is LISTEN, or the keep-alive ping that follows it: a
            # connection that has not yet said LISTEN is not listening.
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'chatq-listener' AND datname = current_database() "
            "AND (query ILIKE 'LISTEN%' OR query = 'SELECT 1')"
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def test_a_notify_from_another_connection_wakes_the_waiter(
    pg: tuple[PostgresStore, str],
) -> None:
    store, url = pg
    await store.wait_for_work(timeout=5)  # connects the listener
    assert len(await listener_pids(url)) == 1
    other = await PostgresStore.open(url)  # as if another API process took the request
    try:
        waiter = asyncio.create_task(store.wait_for_work(timeout=30))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        started = time.monotonic()
        await other.submit(new_request("x"))
        await asyncio.wait_for(waiter, timeout=5)
        assert time.monotonic() - started < 5
    finally:
        await other.close()


async def test_listener_drops_then_polls_then_reconnects(pg: tuple[PostgresStore, str]) -> None:
    store, url = pg
    await store.wait_for_work(timeout=5)
    (pid,) = await listener_pids(url)

    admin = await asyncpg.connect(url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()

    # While the listener is away a wait still ends: by its timeout (polling).
    started = time.monotonic()
    await store.wait_for_work(timeout=0.3)
    assert time.monotonic() - started < 5

    await eventually_async(
        lambda: listener_pids(url),
        lambda pids: pids and pids != [pid],
        what=f"a listener other than the terminated pid {pid}",
        timeout=20,
    )
    waiter = asyncio.create_task(store.wait_for_work(timeout=30))
    await asyncio.sleep(0.1)
    await store.submit(new_request("x"))
    await asyncio.wait_for(waiter, timeout=5)


@asynccontextmanager
async def webhook_notifications(url: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads of chatq_webhook, in commit order, heard on a connection of our own."""
    conn = await asyncpg.connect(url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await conn.add_listener("chatq_webhook", lambda *args: heard.put_nowait(args[3]))
        yield heard
    finally:
        await conn.close()


def hooked(content: str) -> NewRequest:
    request = {"model": "echo", "messages": [{"role": "user", "content": content}]}
    return NewRequest.create(OWNER, request, webhook_url=HOOK)


async def next_heard(heard: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(heard.get(), timeout=10)


async def test_the_outbox_notifies_once_per_statement_that_queues_deliveries(
    pg: tuple[PostgresStore, str],
) -> None:
    """Notifications come in commit order: a marker sent after a transition is heard first
    exactly when the transition itself sent none."""
    store, url = pg
    marker = "SELECT pg_notify('chatq_webhook', $1)"
    async with webhook_notifications(url) as heard:
        conn = await asyncpg.connect(url)
        try:
            # No webhook: the outbox insert runs with no rows, and must not wake deliverers.
            plain = (await store.submit(new_request("plain")))[0].id
            await store.claim("w", 1, 30.0)
            assert await store.complete_many("w", [(plain, {})]) == {plain}
            await conn.execute(marker, "after the plain completion")
            assert await next_heard(heard) == "after the plain completion"

            # A batch that queues deliveries wakes them (PostgreSQL folds a transaction's
            # identical notifications into one, so one is heard).
            ids = [(await store.submit(hooked(f"h{i}")))[0].id for i in range(3)]
            assert len(await store.claim("w", 3, 30.0)) == 3
            assert await store.complete_many("w", [(i, {}) for i in ids]) == set(ids)
            await conn.execute(marker, "after the batch")
            assert [await next_heard(heard), await next_heard(heard)] == ["", "after the batch"]

            # A delivery made due again (a replay) still wakes them: its row trigger.
            assert await store.replay_delivery(ids[0])
            await conn.execute(marker, "after the replay")
            assert [await next_heard(heard), await next_heard(heard)] == ["", "after the replay"]
        finally:
            await conn.close()
