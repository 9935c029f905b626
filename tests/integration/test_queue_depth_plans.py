"""A scrape's one query, the queue depth, and the admin view's queue per model read only the
partial indexes of unfinished rows: they cost the backlog, never the finished requests that
retention keeps (millions, often)."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

from chatq.store import queries as q
from tests.integration.stores import fresh_store
from tests.integration.test_postgres_plans import INSERT, explained, planned_database

FINISHED = 20_000
BACKLOG = 300


async def test_postgres_touches_the_backlog_not_the_finished_rows() -> None:
    async with planned_database() as (store, conn):
        await conn.execute(INSERT, FINISHED, "done-", "COMPLETED")
        await conn.execute(INSERT, BACKLOG, "new-", "CREATED")
        await conn.execute(INSERT, BACKLOG, "run-", "IN_PROGRESS")
        # as a claim leaves them: an IN_PROGRESS row is always leased
        await conn.execute(
            "UPDATE requests SET lease_owner = 'w', lease_expires_at = 1e12 "
            "WHERE status = 'IN_PROGRESS'"
        )
        await conn.execute("VACUUM ANALYZE requests")
        depth = await store.queue_depth()
        assert (depth.created, depth.in_progress) == (BACKLOG, BACKLOG)
        by_model = await store.queue_by_model()
        assert [d.requests for d in by_model] == [BACKLOG, BACKLOG], by_model
        for mode in ("force_custom_plan", "force_generic_plan"):
            touched = await explained(conn, mode, q.QUEUE_DEPTH)
            # Each backlog row once, and the three aggregates over them.
            assert touched <= 2 * BACKLOG + 10, (mode, touched)
            # Each backlog row once into its group, and the groups and their order.
            touched = await explained(conn, mode, q.QUEUE_BY_MODEL)
            assert touched <= 2 * (2 * BACKLOG) + 10, (mode, touched)


async def test_sqlite_reads_each_count_from_its_partial_index(tmp_path: Path) -> None:
    async with fresh_store("sqlite", tmp_path):
        pass  # migrated
    with closing(sqlite3.connect(tmp_path / "chatq-test.db")) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + q.QUEUE_DEPTH)]
    scans = [
        (found.group(1), found.group(2))
        for step in plan
        if (found := re.match(r"(?:SCAN|SEARCH) (\w+) USING (?:COVERING )?INDEX (\w+)", step))
    ]
    assert scans == [
        ("requests", "requests_waiting"),
        ("requests", "requests_leased"),
        ("webhook_deliveries", "webhook_deliveries_due"),
    ], plan
    assert not any(re.fullmatch(r"SCAN \w+", step) for step in plan), "no table scan"


async def test_sqlite_reads_the_queue_per_model_from_the_partial_indexes(tmp_path: Path) -> None:
    async with fresh_store("sqlite", tmp_path):
        pass  # migrated
    with closing(sqlite3.connect(tmp_path / "chatq-test.db")) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + q.QUEUE_BY_MODEL)]
    searched = [
        found.group(1)
        for step in plan
        if (found := re.match(r"SEARCH requests USING INDEX (\w+)", step))
    ]
    assert searched == ["requests_waiting", "requests_leased"], plan
    assert not any(re.fullmatch(r"SCAN \w+", step) for step in plan), "no table scan"
