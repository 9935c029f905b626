"""HTTP benchmarks: chatq's API against a bare FastAPI ceiling, measured in the same run.

For each store (SQLite, PostgreSQL), `chatq api` and bench/ceiling.py run on the same
uvicorn settings; wrk drives each with 64 connections: submit (POST), get-one, list with
limit 20 and 100. Each figure is the median of --runs runs; the ratio is chatq / ceiling
(the median rates' ratio), and each run's own ratio is printed beside it.

    apt-get install wrk        # the load generator
    python bench/api.py       # about 4 minutes; --quick for a smoke run
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx
from common import (
    CHAT,
    PATH,
    arguments,
    chatq_server,
    database_with_key,
    row,
    script_server,
    server_stack,
    table,
    wrk,
)

SCENARIOS = [
    ("submit", "submit.lua", ""),
    ("get one", "get.lua", "/{id}"),
    ("list 20", "get.lua", "?limit=20"),
    ("list 100", "get.lua", "?limit=100"),
]


Results = dict[str, tuple[float, float, float, float]]


def run_once(store: str, seconds: int) -> tuple[Results, str]:
    """scenario -> (chatq req/s, chatq p99, ceiling req/s, ceiling p99); and the event loop
    and HTTP parser each side ran on."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url, key = stack.enter_context(database_with_key(store, Path(tmp)))
        chatq = stack.enter_context(chatq_server("api", url))
        ceiling_server = stack.enter_context(script_server("ceiling.py", ready="/docs"))
        base, ceiling = chatq.url, ceiling_server.url
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(100):  # rows for the lists to return
                request_id = client.post(base + PATH, json=CHAT).json()["id"]
        for name, script, suffix in SCENARIOS:
            tail = suffix.format(id=request_id)
            ours, bare = (
                wrk(
                    server + PATH + tail,
                    script,
                    seconds=seconds,
                    threads=2,
                    connections=64,
                    env={"KEY": key},
                )
                for server in (base, ceiling)
            )
            results[name] = (*ours, *bare)
        stacks = f"chatq {server_stack(chatq.pid)}; ceiling {server_stack(ceiling_server.pid)}"
    return results, stacks


def main() -> int:
    parser = arguments(__doc__, "1 run of 1 s each: a smoke test")
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/api.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    runs, seconds = (1, 1) if args.quick else (args.runs, args.seconds)
    table(
        "store",
        "scenario",
        "chatq req/s",
        "chatq p99 ms",
        "ceiling req/s",
        "ceiling p99 ms",
        "ratio per run",
        "ratio",
    )
    stacks = set()
    for store in args.stores:
        samples = []
        for _ in range(runs):
            results, stack = run_once(store, seconds)
            samples.append(results)
            stacks.add(f"{store}: {stack}")
        for name, _, _ in SCENARIOS:
            ours, ours_p99, bare, bare_p99 = (
                statistics.median(s[name][i] for s in samples) for i in range(4)
            )
            # The spread: each run's own ratio, its two sides measured one after the other.
            per_run = ", ".join(f"{s[name][0] / s[name][2]:.2f}" for s in samples)
            row(
                store,
                name,
                f"{ours:,.0f}",
                f"{ours_p99:.1f}",
                f"{bare:,.0f}",
                f"{bare_p99:.1f}",
                per_run,
                f"{ours / bare:.2f}",
            )
    print("\n" + "\n".join(sorted(stacks)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
