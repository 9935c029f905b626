"""Wake-up latency: how long an idle worker takes to start a submitted request.

For each store, requests are submitted one at a time over HTTP with idle gaps between them
(so workers are always idle, waiting); the latency is started_at - created_at as the store
recorded them (float seconds). SQLite runs `chatq serve` (the worker is woken in process);
PostgreSQL runs `chatq api` + `chatq worker` (woken by LISTEN/NOTIFY). The baseline measured
in the same run is the client's own round trip for the submit.

    python bench/wakeup.py            # 3 runs of 50 requests per store; --quick for a smoke run
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from common import (
    CHAT,
    PATH,
    arguments,
    chatq_server,
    database_with_key,
    percentile,
    process,
    row,
    summaries,
    table,
)


def latencies_ms(url: str) -> list[float]:
    """started_at - created_at of each started request, as the store recorded them."""
    return [
        (s.started_at - s.created_at) * 1000 for s in summaries(url) if s.started_at is not None
    ]


def run_once(store: str, requests: int, gap_s: float) -> tuple[list[float], list[float]]:
    """(wake-up latencies ms, submit round trips ms)."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url, key = stack.enter_context(database_with_key(store, Path(tmp)))
        command = "serve" if store == "sqlite" else "api"
        base = stack.enter_context(chatq_server(command, url)).url
        if store != "sqlite":
            # A worker has no HTTP port: the API's readiness is the condition, then a pause.
            worker = (sys.executable, "-m", "chatq", "worker", "--database", url)
            stack.enter_context(process(*worker, ready=f"{base}/healthz"))
        round_trips = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            time.sleep(1.0)  # let the worker reach its idle wait
            for _ in range(requests):
                started = time.perf_counter()
                assert client.post(PATH, json=CHAT).status_code == 200
                round_trips.append((time.perf_counter() - started) * 1000)
                time.sleep(gap_s)
        deadline = time.monotonic() + 30
        while len(found := latencies_ms(url)) < requests and time.monotonic() < deadline:
            time.sleep(0.1)
        return found, round_trips


def main() -> int:
    parser = arguments(__doc__, "1 run of 5 requests: a smoke test")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    runs, requests = (1, 5) if args.quick else (args.runs, args.requests)
    table("store", "wake-up p50 ms", "wake-up p99 ms", "submit round trip p50 ms", "ratio p50")
    for store in args.stores:
        samples = [run_once(store, requests, gap_s=0.1) for _ in range(runs)]
        p50 = statistics.median(percentile(s[0], 50) for s in samples)
        p99 = statistics.median(percentile(s[0], 99) for s in samples)
        trip = statistics.median(percentile(s[1], 50) for s in samples)
        row(store, f"{p50:.2f}", f"{p99:.2f}", f"{trip:.2f}", f"{p50 / trip:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
