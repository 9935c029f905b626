"""Long-poll wake-up: from the worker's commit of a result to the long-poll's response.

Every request goes to bench/slow_upstream.py, which answers after DELAY (0.2 s). Right
after the submit, the client holds GET /async/chat/completions/{id}?wait=60 on it, which the
API parks on its change feed. The latency of one wake-up is the moment the long-poll's
response has arrived whole at the client (time.time() once aiohttp has read its body) minus
the request's completed_at as the store recorded it, read through the store's list_page
verb (common.summaries: float seconds, where the API shows whole seconds). Both are the
machine's one wall clock. The worker reads its clock for completed_at just before its
UPDATE, so the figure also holds the write and the commit: it bounds commit-to-response
from above.

SQLite runs `chatq serve` (the worker in the API's process tells the waiters itself);
PostgreSQL runs `chatq api` and a separate `chatq worker` (the commit reaches the API as a
NOTIFY on its one listening connection).

A request starts every GAP (50 ms), so about DELAY / GAP are in flight and results land
about GAP apart: each wake-up is timed alone. A sample whose long-poll left the client less
than DELAY / 2 before its completed_at may not have been parked yet: it is left out, and
counted under "left out". A few requests before the timed ones warm up the connections
(and PostgreSQL's listener, which starts with the first watch).

Baseline, in the same run: once a long-poll has answered, the client GETs the same
(finished) request plainly and times that round trip: a whole request's parsing, key check,
read and answer, where a woken long-poll has only the read and the answer left to do.
ratio = wake-up p50 / plain GET p50. Each figure is the median of --runs runs.

    python bench/longpoll_wakeup.py       # 3 runs of 200 requests per store; --quick: 1 of 10
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from common import (
    PATH,
    api_session,
    arguments,
    chatq_server,
    chatq_worker,
    client_stack,
    database_with_key,
    percentile,
    row,
    script_server,
    server_stack,
    summaries,
    table,
    upstream_config,
)

MODEL = "slow"
BODY = {"request": {"model": MODEL, "messages": [{"role": "user", "content": "Wake me."}]}}
WARM_UP = 3


@dataclass(frozen=True)
class Waited:
    """One long-poll, as the client saw it."""

    request_id: str
    sent: float  # time.time() when the long-poll was sent
    arrived: float  # time.time() when its response had been read
    get_ms: float  # the plain GET of the same request that followed, round trip


@dataclass(frozen=True)
class Sample:
    wakeups_ms: list[float]
    gets_ms: list[float]
    left_out: int
    stacks: str


async def wait_for_one(session: aiohttp.ClientSession, start_after: float) -> Waited:
    await asyncio.sleep(start_after)
    async with session.post(PATH, json=BODY) as created:
        request_id = (await created.json())["id"]
    sent = time.time()
    async with session.get(f"{PATH}/{request_id}", params={"wait": "60"}) as waited:
        answer = await waited.json()
    arrived = time.time()
    if answer["status"] != "COMPLETED":
        raise RuntimeError(f"the long-poll answered {answer['status']}: {answer}")
    began = time.perf_counter()
    async with session.get(f"{PATH}/{request_id}") as plain:
        await plain.read()
        assert plain.status == 200
    return Waited(request_id, sent, arrived, (time.perf_counter() - began) * 1000)


async def drive(base: str, key: str, requests: int, gap_s: float) -> tuple[list[Waited], str]:
    """The warm-up, then requests long-polls a gap apart; (the timed ones, client stack)."""
    async with api_session(base, key) as session:
        await asyncio.gather(*(wait_for_one(session, i * gap_s) for i in range(WARM_UP)))
        timed = [wait_for_one(session, i * gap_s) for i in range(requests)]
        return list(await asyncio.gather(*timed)), client_stack()


def run_once(store: str, requests: int, delay_s: float, gap_s: float) -> Sample:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        url, key = stack.enter_context(database_with_key(store, workdir))
        upstream = stack.enter_context(script_server("slow_upstream.py", str(delay_s))).url
        config = str(upstream_config(workdir / "chatq.toml", upstream, MODEL, in_flight=64))
        if store == "sqlite":
            server = stack.enter_context(chatq_server("serve", url, "--config", config))
        else:
            server = stack.enter_context(chatq_server("api", url, "--config", config))
            stack.enter_context(chatq_worker(url, workdir / "worker.log", "--config", config))
        waited, client = asyncio.run(drive(server.url, key, requests, gap_s))
        stacks = f"{store}: server {server_stack(server.pid)}; client {client}"
        completed = {s.id: s.completed_at for s in summaries(url)}
    wakeups, gets, left_out = [], [], 0
    for w in waited:
        done = completed[w.request_id]
        assert done is not None
        if done - w.sent < delay_s / 2:
            left_out += 1
            continue
        wakeups.append((w.arrived - done) * 1000)
        gets.append(w.get_ms)
    return Sample(wakeups, gets, left_out, stacks)


def main() -> int:
    parser = arguments(__doc__, "1 run of 10 requests per store: a smoke test")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.2, help="upstream answer time, s")
    parser.add_argument("--gap", type=float, default=0.05, help="between two requests, s")
    args = parser.parse_args()
    runs, requests = (1, 10) if args.quick else (args.runs, args.requests)
    table(
        "store",
        "requests",
        "left out",
        "wake-up p50 ms",
        "wake-up p99 ms",
        "plain GET p50 ms",
        "ratio p50",
    )
    stacks = []
    for store in args.stores:
        samples = [run_once(store, requests, args.delay, args.gap) for _ in range(runs)]
        p50 = statistics.median(percentile(s.wakeups_ms, 50) for s in samples)
        p99 = statistics.median(percentile(s.wakeups_ms, 99) for s in samples)
        get = statistics.median(percentile(s.gets_ms, 50) for s in samples)
        left_out = sum(s.left_out for s in samples)
        row(
            store,
            f"{requests * runs:,}",
            left_out,
            f"{p50:.2f}",
            f"{p99:.2f}",
            f"{get:.2f}",
            f"{p50 / get:.2f}",
        )
        stacks.append(samples[-1].stacks)
    print("\nLoaded: " + " | ".join(stacks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
