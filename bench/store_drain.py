"""The queue drain at the store level, on PostgreSQL: what the claim and complete_many verbs
cost, without a worker process, an event loop's scheduling or a backend around them.

--jobs requests are submitted through the store's own verb; then, one call at a time, a claim
of --batch and a complete_many of what it claimed, until all are done. Printed per run:

- the drain's seconds (wall clock of the loop) and jobs/s;
- the blocks (8 kB pages) each verb touched in requests' heap and in its indexes, per batch,
  from pg_statio_user_tables. For these, a second pass over a fresh database claims every
  job first and then completes them all, closing the store after each phase (a backend
  leaving flushes its statistics), so that each verb's blocks are counted apart.

Run it from each checkout to compare two versions of the store (the same PostgreSQL server):

    PYTHONPATH=src python bench/store_drain.py --runs 3
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import database, preload, query, with_store

from chatq.store import Store

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
RESPONSE = {
    "id": "x",
    "object": "chat.completion",
    "model": "echo",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
STATIO = """
SELECT heap_blks_read + heap_blks_hit, idx_blks_read + idx_blks_hit
FROM pg_statio_user_tables WHERE relname = 'requests'
"""


@contextmanager
def fresh(jobs: int) -> Iterator[str]:
    """A fresh PostgreSQL database with jobs requests submitted, dropped after."""
    with tempfile.TemporaryDirectory() as tmp, database("postgres", Path(tmp), "drain") as url:
        preload(url, itertools.repeat(CHAT, jobs), at_once=256)
        yield url


def blocks(url: str) -> tuple[int, int]:
    time.sleep(0.5)  # the closed store's backends have flushed their counts
    (row,) = query(url, STATIO)
    return int(row[0]), int(row[1])


def timed_drain(jobs: int, batch: int) -> tuple[float, float, float]:
    """The drain's seconds, and the seconds of it spent in claims and in complete_many."""

    async def drain(store: Store) -> tuple[float, float, float]:
        done, in_claims, in_completes = 0, 0.0, 0.0
        started = time.perf_counter()
        while done < jobs:
            t0 = time.perf_counter()
            claimed = await store.claim("w", batch, 60.0)
            t1 = time.perf_counter()
            finished = await store.complete_many("w", [(j.id, RESPONSE) for j in claimed])
            in_completes += time.perf_counter() - t1
            in_claims += t1 - t0
            done += len(finished)
        return time.perf_counter() - started, in_claims, in_completes

    with fresh(jobs) as url:
        return with_store(url, drain)


def blocks_per_verb(jobs: int, batch: int) -> dict[str, Any]:
    async def claim_all(store: Store) -> list[Any]:
        claims: list[Any] = []
        while len(claims) < jobs:
            claims += await store.claim("w", batch, 600.0)
        return claims

    with fresh(jobs) as url:
        before = blocks(url)
        claims = with_store(url, claim_all)
        claimed = blocks(url)

        async def complete_all(store: Store) -> None:
            for start in range(0, jobs, batch):
                part = claims[start : start + batch]
                await store.complete_many("w", [(j.id, RESPONSE) for j in part])

        with_store(url, complete_all)
        completed = blocks(url)
    batches = -(-jobs // batch)
    return {
        "claim heap": (claimed[0] - before[0]) / batches,
        "claim index": (claimed[1] - before[1]) / batches,
        "complete heap": (completed[0] - claimed[0]) / batches,
        "complete index": (completed[1] - claimed[1]) / batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    seconds = []
    for _ in range(args.runs):
        total, in_claims, in_completes = timed_drain(args.jobs, args.batch)
        seconds.append(total)
        print(
            f"drain {total:.3f} s, {args.jobs / total:,.0f} jobs/s "
            f"(claims {in_claims:.3f} s, complete_many {in_completes:.3f} s)",
            flush=True,
        )
    median = statistics.median(seconds)
    print(f"median of {args.runs}: {median:.3f} s, {args.jobs / median:,.0f} jobs/s")
    per_verb = blocks_per_verb(args.jobs, args.batch)
    print("blocks per batch of", args.batch, {k: round(v) for k, v in per_verb.items()})


if __name__ == "__main__":
    main()
