"""SQLite only: the queue's statements reach their rows through the index meant for them
(SQLite uses a partial index only when the statement names its WHERE), so their cost follows
the batch, not the backlog."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from chatq.store import open_store
from chatq.store.sqlite import queries as q

BACKLOG = """
WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 20000)
INSERT INTO requests (id, owner, model, status, request, request_hash, created_at, vtime)
SELECT 'r' || x, 'o' || (x % 3), 'echo', 'CREATED', '{}', '', x, x FROM g
"""


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "plans.db"
    store = await open_store(f"sqlite:///{path}")
    await store.migrate()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(BACKLOG)
        conn.execute("ANALYZE")
    conn.close()
    return path


def plan(path: Path, sql: str, *args: object) -> list[str]:
    with sqlite3.connect(path) as conn:
        numbered = re.sub(r"[$](\d+)", r"?\1", sql)  # as the store runs it
        rows = conn.execute(f"EXPLAIN QUERY PLAN {numbered}", args)
        details = [str(r[3]) for r in rows]
    conn.close()
    return details


def scans_of_requests(details: list[str]) -> list[str]:
    return [d for d in details if re.match(r"(SCAN|SEARCH) (requests|r)\b", d)]


async def test_the_claim_reads_turns_and_picks_through_their_indexes(database: Path) -> None:
    used = scans_of_requests(plan(database, q.CLAIM, 1.0, "w", 31.0, 256))
    assert any("USING INDEX requests_waiting" in d for d in used), used
    assert any("requests_owner_next (owner=? AND <expr>>?)" in d for d in used), used
    assert all("INDEX" in d or "PRIMARY KEY" in d for d in used), used


async def test_a_submit_and_a_count_read_one_end_of_an_index(database: Path) -> None:
    assert scans_of_requests(plan(database, q.SUBMIT, "[]", 1.0)) == []
    # max(seq): the last row of the table, found by the rowid, not scanned for.
    assert scans_of_requests(plan(database, q.LAST_SEQ)) == ["SEARCH requests"]
    head = scans_of_requests(plan(database, q.QUEUE_HEAD))
    assert len(head) == 1 and "USING INDEX requests_waiting" in head[0], head
    end = scans_of_requests(plan(database, q.LANE_END, "o1"))
    assert len(end) == 1, end
    assert "USING INDEX requests_owner_unfinished (owner=?)" in end[0], end
    counted = scans_of_requests(plan(database, q.UNFINISHED_COUNT, "o1", 10))
    # Either index on the owner's unfinished requests: the count stops at the cap.
    assert len(counted) == 1 and "USING INDEX requests_owner_" in counted[0], counted
    assert "(owner=?" in counted[0], counted
