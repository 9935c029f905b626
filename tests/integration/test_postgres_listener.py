"""PostgreSQL only: LISTEN/NOTIFY wakes idle workers; when the listening connection drops,
waits fall back to polling and the listener comes back by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from chatq.store.postgres.store import PostgresStore
from tests.integration.stores import new_request
from tests.pg import temporary_database
from tests.waiting import eventually_async


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
