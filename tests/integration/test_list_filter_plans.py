"""A list page, filtered or not, reads rows in proportion to its size, at any depth, on both
dialects: one ordered range of requests_owner_status_seq per status asked for; without a
status filter, all four on PostgreSQL and the one range of requests_owner_seq on SQLite.
Rows, not seconds, are counted (PostgreSQL) or the plan is read (SQLite): the same on any
machine."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from chatq.domain import NO_FILTER, ListFilter, Status
from chatq.store import open_store
from chatq.store import queries as shared
from chatq.store.postgres import queries as pg
from chatq.store.sqlite import queries as lite
from chatq.store.sqlite.store import _numbered
from tests.integration.test_postgres_plans import explained, planned_database

ROWS = 50_000  # one owner's, all finished: COMPLETED but every FAILED_EVERY-th
FAILED_EVERY = 50
LIMIT = 20
# What a page may touch: each branch reads limit + 1 rows, and the merge as many again.
MOST_TOUCHED = 8 * (LIMIT + 1)
FILTERS = {
    "no filter": NO_FILTER,
    "model only": ListFilter(model="echo"),
    "one status": ListFilter(statuses=frozenset({Status.FAILED})),
    "two statuses": ListFilter(statuses=frozenset({Status.FAILED, Status.CREATED})),
    "status and model": ListFilter(statuses=frozenset({Status.FAILED}), model="echo"),
}
INSERT = f"""
INSERT INTO requests (id, owner, model, status, request, request_hash, created_at)
SELECT 'r-' || g, 'o', 'echo',
       CASE WHEN g % {FAILED_EVERY} = 0 THEN 'FAILED' ELSE 'COMPLETED' END, '{{}}', '', g
FROM generate_series(1, $1) AS g
"""


@asynccontextmanager
async def seeded(rows: int, analyzed: bool) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a migrated temporary database holding INSERT's rows, its statistics
    taken after them or never."""
    async with planned_database() as (_, conn):
        await conn.execute(INSERT, rows)
        if analyzed:
            await conn.execute("VACUUM ANALYZE requests")
        yield conn


@pytest.fixture(params=["analyzed", "never analyzed"])
async def postgres(request: pytest.FixtureRequest) -> AsyncIterator[asyncpg.Connection]:
    async with seeded(ROWS, analyzed=request.param == "analyzed") as conn:
        yield conn


async def test_a_page_on_postgres_touches_about_a_page_of_rows(
    postgres: asyncpg.Connection,
) -> None:
    for narrowed in FILTERS.values():
        for before in (None, ROWS // 2, 4 * FAILED_EVERY * LIMIT):
            sql, args = shared.list_query("o", narrowed, before, LIMIT, pg.METADATA_MATCH, True)
            rows = await postgres.fetch(sql, *args)
            assert len(rows) == LIMIT + 1
            allowed = {status.value for status in narrowed.statuses or Status}
            assert all(r["status"] in allowed for r in rows), narrowed
            assert [r["seq"] for r in rows] == sorted((r["seq"] for r in rows), reverse=True)
            for plan_cache_mode in ("force_custom_plan", "force_generic_plan"):
                touched = await explained(postgres, plan_cache_mode, sql, *args)
                assert touched <= MOST_TOUCHED, (narrowed, before, plan_cache_mode, touched)


@pytest.mark.parametrize("name", list(FILTERS))
async def test_a_page_on_sqlite_is_one_range_per_status_or_of_the_owner_index(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "plans.db"
    store = await open_store(f"sqlite:///{path}")
    await store.migrate()
    await store.close()
    with sqlite3.connect(path) as conn:
        sql, args = shared.list_query("o", FILTERS[name], 1000, LIMIT, lite.METADATA_MATCH, False)
        steps = conn.execute(f"EXPLAIN QUERY PLAN {_numbered(sql)}", args).fetchall()
    conn.close()
    plan = [step[3] for step in steps]
    statuses = FILTERS[name].statuses
    ranges = [step for step in plan if "requests_owner_status_seq" in step]
    assert len(ranges) == len(statuses), plan
    assert all("(owner=? AND status=? AND seq<?)" in step for step in ranges), plan
    if not statuses:
        ranges = [step for step in plan if "requests_owner_seq (owner=? AND seq<?)" in step]
        assert len(ranges) == 1, plan
    assert not any("SCAN requests" in step for step in plan), plan
    # Each branch comes out of its index in order and stops at limit + 1 rows: a sort may
    # only merge the branches' few rows, never sort what a branch's range reads.
    detail = {step[0]: step[3] for step in steps}
    sorts = [step for step in steps if "TEMP B-TREE" in step[3]]
    if len(ranges) == 1:
        assert not sorts, plan
    assert not any(detail.get(step[1], "").startswith("CO-ROUTINE") for step in sorts), plan


async def test_a_page_on_postgres_is_planned_once_not_on_every_call() -> None:
    """Planning four branches costs more than running them: the prepared statement must
    settle on its generic plan after its five custom ones. With the LIMIT a parameter, at
    200k rows and more, it never did (about 0.4 ms a call instead of 0.15 at 1M rows)."""
    async with seeded(200_000, analyzed=True) as conn:
        for before in (None, 100_000):
            sql, args = shared.list_query(
                "o", NO_FILTER, before, LIMIT, pg.METADATA_MATCH, status_ranges_only=True
            )
            statement = await conn.prepare(sql)
            for _ in range(10):
                assert len(await statement.fetch(*args)) == LIMIT + 1
            plans = await conn.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement = $1",
                sql,
            )
            assert plans is not None and tuple(plans) == (5, 5), before
