"""PostgreSQL only: the queue's statements touch rows in proportion to their batch, whatever
the planner believes.

After a burst of submits, before autovacuum has analyzed the table, its statistics say that
almost nothing is waiting, or there are none yet. A plan that is only good for what the
statistics say then touches every waiting row, or every pair of rows, on each call: a claim
of 256 once took 8 s with 200,000 waiting. Rows, not seconds, are counted here: a plan's row
counts are the same on any machine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from chatq.store.postgres import queries as q
from chatq.store.postgres.store import PostgresStore
from tests.pg import temporary_database

FINISHED = 20_000  # what the last ANALYZE saw: all of it finished
BURST = 20_000  # then submitted at once, not analyzed since
BATCH = 256
# Every row a plan node produced or filtered out, summed over the plan: a handful per claimed
# row is a plan that follows the batch; the bad plan counted five million for this burst.
ROWS_PER_BATCH_ROW = 20
# Batches a worker holds unrecorded when it records one: more than ROWS_PER_BATCH_ROW, so a
# plan that reads all it holds is caught.
LEASED_BATCHES = 40


@dataclass
class Burst:
    store: PostgresStore
    conn: asyncpg.Connection
    analyzed: bool  # False: no statistics at all, as for a new table


INSERT = """
INSERT INTO requests (id, owner, model, status, request, request_hash, created_at)
SELECT $2 || g, 'o', 'echo', $3, '{"model":"echo","messages":[]}', '', g
FROM generate_series(1, $1) AS g
"""


@asynccontextmanager
async def planned_database() -> AsyncIterator[tuple[PostgresStore, asyncpg.Connection]]:
    """A migrated temporary database whose statistics change only when a test says so
    (autovacuum would analyze the table), its store, and a connection to run EXPLAIN on."""
    async with temporary_database() as url:
        store = await PostgresStore.open(url)
        conn = await asyncpg.connect(url)
        try:
            await store.migrate()
            await conn.execute("ALTER TABLE requests SET (autovacuum_enabled = false)")
            yield store, conn
        finally:
            await conn.close()
            await store.close()


@pytest.fixture(params=["analyzed before the burst", "never analyzed"])
async def burst(request: pytest.FixtureRequest) -> AsyncIterator[Burst]:
    async with planned_database() as (store, conn):
        if request.param == "analyzed before the burst":
            await conn.execute(INSERT, FINISHED, "done-", "COMPLETED")
            await conn.execute("VACUUM ANALYZE requests")
        await conn.execute(INSERT, BURST, "new-", "CREATED")
        yield Burst(store, conn, analyzed=request.param == "analyzed before the burst")


def rows_touched(node: dict[str, Any]) -> int:
    own = node["Actual Rows"] * node["Actual Loops"]
    removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Join Filter", 0)
    return int(own + removed + sum(rows_touched(child) for child in node.get("Plans", [])))


async def explained(conn: asyncpg.Connection, plan_cache_mode: str, sql: str, *args: Any) -> int:
    """Rows the statement's plan touched when run as the store runs it (prepared, by asyncpg),
    its effects rolled back. auto_explain hands the plan back as a notice: EXPLAIN itself
    would plan with the arguments as constants, never with a generic plan."""
    notices: list[str] = []
    conn.add_log_listener(lambda _, message: notices.append(str(message.message)))
    await conn.execute("LOAD 'auto_explain'")
    for setting in (
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_analyze = on",
        "auto_explain.log_format = json",
        "auto_explain.log_level = notice",
        "client_min_messages = notice",
        f"plan_cache_mode = {plan_cache_mode}",
    ):
        await conn.execute(f"SET {setting}")
    transaction = conn.transaction()
    await transaction.start()
    try:
        notices.clear()
        await conn.fetch(sql, *args)
    finally:
        await transaction.rollback()
    # The statement's own plan: asyncpg may run queries of its own first (the introspection
    # of array types it has not met on this connection).
    plans = [json.loads(n[n.index("{") :]) for n in notices if '"Plan"' in n]
    (plan,) = [p for p in plans if p["Query Text"] == sql]
    node: dict[str, Any] = plan["Plan"]
    return rows_touched(node)


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_claim_after_a_burst_touches_rows_in_proportion_to_its_batch(
    burst: Burst, plan_cache_mode: str
) -> None:
    touched = await explained(burst.conn, plan_cache_mode, q.CLAIM, 1.0, "w", 31.0, BATCH)
    if not burst.analyzed and plan_cache_mode == "force_custom_plan":
        # Known and left (docs/benchmarks.md): with no statistics at all, the planner sorts
        # every waiting row to take the oldest. Linear in the backlog, and only until
        # autovacuum first analyzes the table; never waiting x batch.
        assert touched <= 3 * BURST, touched
    else:
        assert touched <= ROWS_PER_BATCH_ROW * BATCH, touched


QUEUED = 100_000  # one owner's backlog, as bench/fair_share.py has it
NEWCOMERS = 100
# Owner 'a' has QUEUED waiting with turns 1.., then owner 'b' arrives with NEWCOMERS at
# turns 1.. (the head of the queue): the claim interleaves them.
INSERT_OWNER = """
INSERT INTO requests (id, owner, model, status, request, request_hash, created_at, vtime)
SELECT $1 || g, $1, 'echo', 'CREATED', '{"model":"echo","messages":[]}', '', g, g
FROM generate_series(1, $2) AS g
"""


@pytest.fixture(params=["analyzed before the backlog", "analyzed with the backlog"])
async def backlog(request: pytest.FixtureRequest) -> AsyncIterator[asyncpg.Connection]:
    async with planned_database() as (_, conn):
        if request.param == "analyzed before the backlog":
            await conn.execute(INSERT, FINISHED, "done-", "COMPLETED")
            await conn.execute("VACUUM ANALYZE requests")
        await conn.execute(INSERT_OWNER, "a", QUEUED)
        await conn.execute(INSERT_OWNER, "b", NEWCOMERS)
        if request.param == "analyzed with the backlog":
            await conn.execute("VACUUM ANALYZE requests")
        yield conn


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_fair_share_claim_over_a_big_backlog_touches_rows_in_proportion_to_its_batch(
    backlog: asyncpg.Connection, plan_cache_mode: str
) -> None:
    """The turns come from requests_waiting, each owner's picks from requests_owner_next:
    both index scans as long as the batch, whatever the backlog and the statistics."""
    touched = await explained(backlog, plan_cache_mode, q.CLAIM, 1.0, "w", 31.0, BATCH)
    assert touched <= ROWS_PER_BATCH_ROW * BATCH, touched


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_submit_finds_its_place_in_the_queue_through_the_indexes(
    backlog: asyncpg.Connection, plan_cache_mode: str
) -> None:
    """The head of the queue and the end of each owner's lane are read at one end of an
    index, not by scanning the backlog."""
    size = 64
    ids, owners = [f"new-{i}" for i in range(size)], ["a", "c"] * (size // 2)
    text, empty = ['{"model":"echo","messages":[]}'] * size, [""] * size
    args = (ids, owners, ["echo"] * size, text, empty, [None] * size, 1.0)
    touched = await explained(
        backlog,
        plan_cache_mode,
        q.SUBMIT,
        *args,
        [False] * size,  # stream
        [None] * size,  # webhook_url
        [None] * size,  # metadata
        [0] * size,  # priority
    )
    assert touched <= ROWS_PER_BATCH_ROW * size, touched


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_counting_unfinished_requests_against_a_cap_stops_at_the_cap(
    backlog: asyncpg.Connection, plan_cache_mode: str
) -> None:
    """An owner's count reads its waiting and running ranges of requests_owner_status_seq
    up to its cap, not its backlog (owner a holds QUEUED waiting requests)."""
    cap = 1000
    owners, caps = ["a", "b"], [cap, cap]
    touched = await explained(backlog, plan_cache_mode, q.UNFINISHED_COUNTS, owners, caps)
    assert touched <= 4 * (cap + NEWCOMERS), touched


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_recording_a_batch_touches_rows_in_proportion_to_the_batch(
    burst: Burst, plan_cache_mode: str
) -> None:
    store, conn = burst.store, burst.conn
    for _ in range(20):  # a drain under way: earlier batches claimed and recorded
        claimed = await store.claim("w", BATCH, 30.0)
        await store.complete_many("w", [(job.id, {}) for job in claimed])
    # A worker claims ahead of its writes: thousands of its rows can wait to be recorded.
    leased = [job.id for _ in range(LEASED_BATCHES) for job in await store.claim("w", BATCH, 30.0)]
    assert len(leased) == LEASED_BATCHES * BATCH
    done = leased[:BATCH]
    zeros = [0] * len(done)
    touched = await explained(
        conn,
        plan_cache_mode,
        q.COMPLETE_MANY,
        2.0,
        done,
        ["{}"] * len(done),
        "w",
        zeros,
        zeros,
        zeros,
        [0.0] * len(done),
    )
    # The batch's own rows, found by id: not every row the worker holds (a hash join over
    # them all, on every batch), still less those times the batch (a nested loop).
    assert touched <= ROWS_PER_BATCH_ROW * len(done), touched
