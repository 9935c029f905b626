"""Batch submits: requests per second through POST /async/chat/completions/batch against
single submits (POST /async/chat/completions), measured in the same run.

For each store, `chatq api` (no worker: only submits are measured) runs on a fresh
database; wrk drives the single route with 64 connections (bench/submit.lua, as bench/api.py
does), then the batch route with 2 connections, each request a batch of --batch items of
the same request (bench/batch.lua). The batch rate counts items, not HTTP requests. Each
figure is the median of --runs runs, each on a fresh database; the ratio is batch / single.

    apt-get install wrk               # the load generator
    python bench/batch_submit.py      # about 2 minutes; --quick for a smoke run
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from common import CHAT, PATH, arguments, chatq_server, database_with_key, row, table, wrk

# Batches in flight at once: two keep the API process busy (one is read and checked while
# the other is written); more only queue.
CONNECTIONS = 2


def run_once(store: str, seconds: int, size: int) -> tuple[float, float]:
    """(single submits/s, batched submits/s) on a fresh database."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url, key = stack.enter_context(database_with_key(store, Path(tmp)))
        base = stack.enter_context(chatq_server("api", url)).url
        body = Path(tmp) / "batch.json"
        body.write_text(json.dumps({"requests": [CHAT] * size}))
        single, _ = wrk(
            base + PATH, "submit.lua", seconds=seconds, threads=2, connections=64, env={"KEY": key}
        )
        # A batch of 1,000 takes a good part of a second: no wrk timeout may drop one
        # uncounted, and any socket error fails the run.
        batches, _ = wrk(
            f"{base}{PATH}/batch",
            "batch.lua",
            seconds=seconds,
            threads=2,
            connections=CONNECTIONS,
            env={"KEY": key, "BODY": str(body)},
            fail_on=("Non-2xx", "Socket errors"),
            timeout_s=60,
        )
        return single, batches * size


def main() -> int:
    parser = arguments(__doc__, "1 run of 1 s each, batches of 100: a smoke test")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="items per batch (1 to 1000)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/batch_submit.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    runs, seconds, size = (1, 1, 100) if args.quick else (args.runs, args.seconds, args.batch)
    table("store", "single req/s", "batched req/s", "items per batch", "ratio batch / single")
    for store in args.stores:
        samples = [run_once(store, seconds, size) for _ in range(runs)]
        single, batched = (statistics.median(s[i] for s in samples) for i in range(2))
        row(store, f"{single:,.0f}", f"{batched:,.0f}", size, f"{batched / single:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
