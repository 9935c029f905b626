"""Long jobs: 5,000 requests to an upstream that answers after 2 s, 1,000 in flight.

For each store, the requests are all submitted first (the store's own submit verb, before
any worker runs), then one `chatq worker` starts with `[worker] concurrency` and the
backend's `max_concurrency` both at 1,000, against bench/slow_upstream.py (a plain asyncio
OpenAI-compatible server on 127.0.0.1 that answers every call after the delay).

The clock starts when the worker prints `chatq worker ID ready` (its process is up, the
store is open and migrated, the backend's client is built; the next thing it does is claim)
and stops at the last completed_at the store recorded (the worker's own clock, so polling
granularity does not count; the bench polls one count query every 0.25 s). The ideal is
requests / in-flight x delay (10 s); the ratio is ideal / wall. Python's start-up and
imports before the ready line are not on the clock; they are shown apart, as start-up.
Peak RSS is VmHWM from /proc/PID/status of the worker process and CPU its utime + stime
(start-up included), both read once the last job is COMPLETED. Each figure is the median
of --runs runs.

The last row is a baseline measured in the same run: the same calls through chatq's OpenAI
backend alone (its client and connection pools, no store, no worker), in the bench's own
process, from the first call to the last answer.

    python bench/long_jobs.py         # about 5 minutes; --quick for a smoke run
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    arguments,
    chatq_worker,
    cpu_s,
    database,
    finished,
    preload,
    row,
    rss_mb,
    script_server,
    table,
    upstream_config,
)

from chatq.backends.openai import OpenAIBackend
from chatq.config import BackendConfig

MODEL = "slow"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Take your time."}]}


@dataclass(frozen=True)
class Sample:
    wall_s: float
    startup_s: float
    peak_rss_mb: float
    cpu_s: float
    upstream_peak: int
    failed: int


async def backend_alone(base_url: str, requests: int, in_flight: int) -> float:
    """Seconds for the same calls through chatq's OpenAI backend alone: no store, no worker."""
    config = BackendConfig(
        name="slow",
        type="openai",
        models=(MODEL,),
        base_url=f"{base_url}/v1",
        max_concurrency=in_flight,
        timeout_s=120,
    )
    backend = OpenAIBackend(config)
    slots = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with slots:
            await backend.run(str(i), BODY)

    started = time.time()
    try:
        await asyncio.gather(*(one(i) for i in range(requests)))
        return time.time() - started
    finally:
        await backend.aclose()


def run_once(store: str, requests: int, in_flight: int, delay_s: float) -> Sample:
    """One timed drain by `chatq worker` on a fresh database."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        url = stack.enter_context(database(store, workdir))
        upstream = stack.enter_context(script_server("slow_upstream.py", str(delay_s))).url
        config = upstream_config(workdir / "chatq.toml", upstream, MODEL, in_flight)
        preload(url, [BODY] * requests)  # the store's own submit verb, 100 at a time
        log = workdir / "worker.log"
        proc, startup_s = stack.enter_context(chatq_worker(url, log, "--config", str(config)))
        started = time.time()
        deadline = time.monotonic() + 20 * requests / in_flight * delay_s + 60
        while (done := finished(url)).count < requests:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "worker.log").read_text()[-2000:]
                raise RuntimeError(f"{done.count}/{requests} finished; worker log:\n{tail}")
            time.sleep(0.25)
        rss, cpu = rss_mb(proc.pid, "VmHWM"), cpu_s(proc.pid)
        stats = httpx.get(f"{upstream}/stats", timeout=10).json()
        assert done.last_finished is not None
        wall_s = done.last_finished - started
        return Sample(wall_s, startup_s, rss, cpu, int(stats["peak"]), done.failed)


def baseline_once(requests: int, in_flight: int, delay_s: float) -> float:
    """The same calls through the backend alone, in this process, on a fresh upstream."""
    with script_server("slow_upstream.py", str(delay_s)) as upstream:
        return asyncio.run(backend_alone(upstream.url, requests, in_flight))


def main() -> int:
    parser = arguments(__doc__, "1 run of 200 requests x 0.5 s, 100 in flight")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=2.0, help="upstream answer time, s")
    args = parser.parse_args()
    if args.quick:
        runs, requests, in_flight, delay_s = 1, 200, 100, 0.5
    else:
        runs, requests, in_flight, delay_s = args.runs, args.requests, args.in_flight, args.delay
    ideal = requests / in_flight * delay_s
    table(
        "run",
        "requests",
        "in flight",
        "delay s",
        "ideal s",
        "wall s",
        "ideal / wall",
        "worker peak RSS MB",
        "worker CPU s",
        "upstream peak in flight",
        "failed",
        "worker start-up s",
    )
    head = f"{requests:,} | {in_flight:,} | {delay_s:g} | {ideal:.1f}"
    for store in args.stores:
        samples = [run_once(store, requests, in_flight, delay_s) for _ in range(runs)]
        wall = statistics.median(s.wall_s for s in samples)
        rss = statistics.median(s.peak_rss_mb for s in samples)
        cpu = statistics.median(s.cpu_s for s in samples)
        peak = statistics.median(s.upstream_peak for s in samples)
        failed = max(s.failed for s in samples)
        startup = statistics.median(s.startup_s for s in samples)
        row(
            store,
            head,
            f"{wall:.2f}",
            f"{ideal / wall:.2f}",
            f"{rss:.0f}",
            f"{cpu:.1f}",
            f"{peak:,.0f}",
            failed,
            f"{startup:.2f}",
        )
    wall = statistics.median(baseline_once(requests, in_flight, delay_s) for _ in range(runs))
    row("backend alone", head, f"{wall:.2f}", f"{ideal / wall:.2f}", *["-"] * 5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
