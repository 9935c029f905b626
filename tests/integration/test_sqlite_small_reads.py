"""SQLite only: a get and a short list page are read on the event loop's own thread, on a
connection that never waits; when that read fails (a lock it will not wait for), the same
read is made in the reader's thread, as every other read is."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatq.store.sqlite.store import SqliteStore
from tests.integration.stores import OWNER, fresh_store, new_request


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with fresh_store("sqlite", tmp_path) as store:
        assert isinstance(store, SqliteStore)
        yield store


async def test_small_reads_see_what_was_just_committed(sqlite_store: SqliteStore) -> None:
    job, _ = await sqlite_store.submit(new_request("fresh"))
    found = await sqlite_store.get(OWNER, job.id)
    page, more = await sqlite_store.list_page(OWNER, 20, None)
    assert found is not None and found.id == job.id
    assert [s.id for s in page] == [job.id] and not more


async def test_a_failing_small_read_is_made_in_the_readers_thread(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    jobs = [(await sqlite_store.submit(new_request(f"r{i}")))[0] for i in range(3)]
    # A real connection whose every read fails, as a locked database's would: it has no
    # tables. The store's own inline connection is put back for close().
    failing = sqlite3.connect(tmp_path / "empty.db", check_same_thread=False)
    inline, sqlite_store._inline = sqlite_store._inline, failing
    try:
        with pytest.raises(sqlite3.OperationalError):
            failing.execute("SELECT 1 FROM requests")
        found = await sqlite_store.get(OWNER, jobs[0].id)
        page, more = await sqlite_store.list_page(OWNER, 2, None)
    finally:
        sqlite_store._inline = inline
        failing.close()
    assert found is not None and found.id == jobs[0].id
    assert [s.id for s in page] == [jobs[2].id, jobs[1].id] and more
