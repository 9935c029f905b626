"""Fair share: how long a newcomer's requests wait behind another owner's backlog.

Owner A has --backlog requests queued (100,000), each a 200 ms call to bench/slow_upstream.py
(an OpenAI-compatible server on 127.0.0.1 that answers after the delay), and one
`chatq worker` runs them with --concurrency in flight (256, its default). Once the worker is
full (the upstream has seen that many calls in flight at once), owner B submits --newcomers
requests (100). The figure is B's queue wait, started_at - created_at as the store recorded
them, p50 and p99.

Each store runs it twice, each time on a fresh database, in the same run:
- fair share: B is an owner of its own. Claims interleave owners, so B's requests take turns
  with A's backlog.
- strict FIFO: B's requests are submitted as A's. Within one owner (all at priority 0) the
  claim takes requests oldest first, so they wait behind all of A's backlog, in exactly the
  order that a FIFO claim (oldest first, whoever the owner) gives them. That is what chatq
  did before fair share, and it is not simulated by a different code path: same claim, same
  worker.

Requests go in through the store's submit verb. The worker is stopped once B's requests have
all started; A's backlog is not drained.

    python bench/fair_share.py            # several minutes; --quick for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from common import (
    arguments,
    chatq_worker,
    database,
    percentile,
    row,
    script_server,
    table,
    upstream_config,
    with_store,
)

from chatq.domain import NewRequest, Summary
from chatq.store import Store

MODEL = "slow"
DELAY_S = 0.2
BACKLOG_OWNER, NEWCOMER = "owner-a", "owner-b"
TIMEOUT_S = 1800.0
_databases = itertools.count()


def chat(i: int) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"job {i}"}]}


def submit(url: str, owner: str, count: int, migrate: bool = False) -> None:
    """count requests of owner through the store's submit verb, 200 at a time."""

    async def work(store: Store) -> None:
        if migrate:
            await store.migrate()
        for start in range(0, count, 200):
            group = [
                NewRequest.create(owner, chat(i)) for i in range(start, min(count, start + 200))
            ]
            await asyncio.gather(*(store.submit(n) for n in group))

    with_store(url, work)


def newest(url: str, owner: str, count: int) -> list[Summary]:
    """owner's count newest requests: the newcomers, whoever they were submitted as."""

    async def work(store: Store) -> list[Summary]:
        page, _ = await store.list_page(owner, count, None)
        return page

    return with_store(url, work)


def wait_full(upstream: str, concurrency: int) -> None:
    deadline = time.monotonic() + 120
    while httpx.get(f"{upstream}/stats", timeout=10).json()["peak"] < concurrency:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not fill up")
        time.sleep(0.1)


def queue_waits(store: str, fair: bool, args: argparse.Namespace, workdir: Path) -> list[float]:
    """B's queue waits in seconds, with B its own owner (fair) or submitted as A."""
    backlog, newcomers, concurrency = args.backlog, args.newcomers, args.concurrency
    owner = NEWCOMER if fair else BACKLOG_OWNER
    with ExitStack() as stack:
        url = stack.enter_context(database(store, workdir, f"fair{next(_databases)}"))
        submit(url, BACKLOG_OWNER, backlog, migrate=True)
        upstream = stack.enter_context(script_server("slow_upstream.py", str(DELAY_S))).url
        config = upstream_config(workdir / "fair.toml", upstream, MODEL, concurrency)
        stack.enter_context(chatq_worker(url, workdir / "worker.log", "--config", str(config)))
        wait_full(upstream, concurrency)
        submit(url, owner, newcomers)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            mine = newest(url, owner, newcomers)
            if all(s.started_at is not None for s in mine):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the newcomers did not all start")
            time.sleep(0.25)
    return [s.started_at - s.created_at for s in mine if s.started_at is not None]


def main() -> int:
    parser = arguments(__doc__, "a backlog of 1,000 and 20 newcomers, 50 in flight, 1 run")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--newcomers", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=256, help="chatq's (its default)")
    args = parser.parse_args()
    if args.quick:
        args.backlog, args.newcomers, args.concurrency, args.runs = 1_000, 20, 50, 1
    table(
        "store",
        "claim order",
        "A queued",
        "B submits",
        "in flight",
        "B queue wait p50 s",
        "p99 s",
    )
    for store in args.stores:
        p50s: dict[bool, list[float]] = {True: [], False: []}
        p99s: dict[bool, list[float]] = {True: [], False: []}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.runs):
                for fair in (True, False):
                    waits = queue_waits(store, fair, args, Path(tmp))
                    p50s[fair].append(statistics.median(waits))
                    p99s[fair].append(percentile(waits, 99))
        for fair in (True, False):
            row(
                store,
                "fair share" if fair else "strict FIFO (B submitted as A)",
                f"{args.backlog:,}",
                args.newcomers,
                args.concurrency,
                f"{statistics.median(p50s[fair]):.3f}",
                f"{statistics.median(p99s[fair]):.3f}",
            )
        ratio = statistics.median(p50s[False]) / statistics.median(p50s[True])
        row(store, "p50 ratio FIFO / fair share", "", "", "", f"{ratio:.1f}", "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
