"""Webhooks: how soon an event reaches its receiver, and what delivering them costs a drain.

Both parts deliver to bench/webhook_receiver.py, which answers 204 at once and records when
each event arrived; chatq runs with `[webhooks] allow_private_networks = true` to reach it on
127.0.0.1, and serves the instant echo model.

1. Delivery latency, per store. SQLite runs `chatq serve`; PostgreSQL `chatq api` and a
   separate `chatq worker`. The client submits a request with `webhook_url` every GAP
   (50 ms), so each event is delivered alone. One latency is the event's arrival at the
   receiver minus its request's completed_at as the store recorded it (float seconds, read
   through the store's list_page verb); both are the machine's one wall clock, and the
   result's write and commit are inside the figure, so it bounds commit-to-receiver from
   above. Baseline, in the same run: the client POSTs the same event body to the receiver
   itself and times the round trip, which is the least any delivery costs.
   ratio = delivery p50 / that round trip p50.

2. Queue drain with a webhook on every request, PostgreSQL, as bench/queue_drain.py: JOBS
   echo requests loaded through the store's own submit verb, then one `chatq worker` (its
   defaults) drains them; the drain is max(completed_at) - min(started_at) as the database
   recorded it. The same run loads them once with a webhook each and once without, taking
   turns. Deliveries go on during the drain, on the same cores; the table also gives the
   time until the last event had arrived. ratio = jobs/s with webhooks / jobs/s without.

    python bench/webhook_delivery.py   # 3 runs; --quick: 1 run of 10 requests and 300 jobs
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from common import (
    PATH,
    Server,
    api_session,
    arguments,
    chatq_server,
    chatq_worker,
    database,
    database_with_key,
    finished,
    percentile,
    preload,
    row,
    script_server,
    summaries,
    table,
)

CONFIG = """\
[webhooks]
allow_private_networks = true

[[backends]]
name = "echo"
type = "echo"
models = ["echo"]
"""
WARM_UP = 3
TIMEOUT_S = 600.0


def chat(i: int) -> dict[str, object]:
    return {"model": "echo", "messages": [{"role": "user", "content": f"job {i}"}]}


def received(receiver: Server) -> list[tuple[float, str, str]]:
    """(arrival time, webhook-id, request id) of every event the receiver got."""
    answer = httpx.get(f"{receiver.url}/received", timeout=30).json()
    return [(float(r[0]), str(r[1]), str(r[2])) for r in answer]


def wait_for_events(receiver: Server, count: int) -> list[tuple[float, str, str]]:
    deadline = time.monotonic() + TIMEOUT_S
    while len(events := received(receiver)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(events)} of {count} events arrived in {TIMEOUT_S:g}s")
        time.sleep(0.2)
    return events


@contextmanager
def setting_up(workdir: Path) -> Iterator[tuple[Server, str]]:
    """The receiver, and a chatq config file that lets chatq reach it."""
    config = workdir / "chatq.toml"
    config.write_text(CONFIG)
    with script_server("webhook_receiver.py") as receiver:
        yield receiver, str(config)


# ---- 1. latency


@dataclass(frozen=True)
class Latency:
    deliveries_ms: list[float]
    round_trips_ms: list[float]


async def submit_all(base: str, key: str, hook: str, requests: int, gap_s: float) -> list[str]:
    """Submit requests a gap apart, each with the webhook; their ids, warm-up ones first."""
    async with api_session(base, key) as session:

        async def one(after: float, content: str) -> str:
            await asyncio.sleep(after)
            body = {"request": chat(0) | {"messages": [{"role": "user", "content": content}]}}
            async with session.post(PATH, json=body | {"webhook_url": hook}) as created:
                assert created.status == 200, await created.text()
                return str((await created.json())["id"])

        total = WARM_UP + requests
        return list(await asyncio.gather(*(one(i * gap_s, f"r{i}") for i in range(total))))


async def round_trips(hook: str, body: bytes, count: int) -> list[float]:
    """The client's own POSTs of an event's body to the receiver, one at a time, in ms."""
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            began = time.perf_counter()
            async with session.post(hook, data=body) as answered:
                assert answered.status == 204
            times.append((time.perf_counter() - began) * 1000)
    return times


def latency_once(store: str, requests: int, gap_s: float) -> Latency:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        url, key = stack.enter_context(database_with_key(store, workdir))
        receiver, config = stack.enter_context(setting_up(workdir))
        hook = f"{receiver.url}/hook"
        if store == "sqlite":
            server = stack.enter_context(chatq_server("serve", url, "--config", config))
        else:
            server = stack.enter_context(chatq_server("api", url, "--config", config))
            stack.enter_context(chatq_worker(url, workdir / "worker.log", "--config", config))
        ids = asyncio.run(submit_all(server.url, key, hook, requests, gap_s))
        events = wait_for_events(receiver, len(ids))
        completed = {s.id: s.completed_at for s in summaries(url)}
        # The same bytes a delivery carries: an event whose data is a finished request.
        job = httpx.get(
            f"{server.url}{PATH}/{ids[0]}", headers={"Authorization": f"Bearer {key}"}
        ).json()
        body = json.dumps({"type": "async_chat_completion.completed", "data": job}).encode()
        trips = asyncio.run(round_trips(hook, body, requests))
    first: dict[str, float] = {}
    for arrived, _, request_id in events:
        first.setdefault(request_id, arrived)  # a duplicate delivery is not a new latency
    timed = ids[WARM_UP:]
    deliveries = []
    for request_id in timed:
        done = completed[request_id]
        assert done is not None, f"{request_id} has no completed_at"
        deliveries.append((first[request_id] - done) * 1000)
    return Latency(deliveries, trips)


# ---- 2. the drain


@dataclass(frozen=True)
class Drain:
    jobs_per_s: float
    last_event_s: float | None  # from the first claim to the last event's arrival


def drain_once(jobs: int, hooked: bool) -> Drain:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        receiver, config = stack.enter_context(setting_up(workdir))
        url = stack.enter_context(database("postgres", workdir))
        hook = f"{receiver.url}/hook" if hooked else None
        preload(url, (chat(i) for i in range(jobs)), webhook_url=hook)
        with chatq_worker(url, workdir / "worker.log", "--config", config):
            deadline = time.monotonic() + TIMEOUT_S
            while finished(url).count < jobs:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not drained within {TIMEOUT_S:g}s")
                time.sleep(0.2)
            events = wait_for_events(receiver, jobs) if hooked else []
        done = finished(url)
        if done.failed or done.first_started is None or done.last_finished is None:
            raise RuntimeError(f"the echo jobs did not all complete: {done}")
        last_event = max(e[0] for e in events) - done.first_started if events else None
        return Drain(jobs / (done.last_finished - done.first_started), last_event)


def main() -> int:
    parser = arguments(__doc__, "1 run of 10 requests per store and 300 jobs: a smoke test")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.05, help="between two requests, s")
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    runs, requests, jobs = (1, 10, 300) if args.quick else (args.runs, args.requests, args.jobs)

    table(
        "store",
        "events",
        "delivery p50 ms",
        "delivery p99 ms",
        "receiver round trip p50 ms",
        "ratio p50",
    )
    for store in args.stores:
        samples = [latency_once(store, requests, args.gap) for _ in range(runs)]
        p50 = statistics.median(percentile(s.deliveries_ms, 50) for s in samples)
        p99 = statistics.median(percentile(s.deliveries_ms, 99) for s in samples)
        trip = statistics.median(percentile(s.round_trips_ms, 50) for s in samples)
        row(
            store,
            f"{requests * runs:,}",
            f"{p50:.2f}",
            f"{p99:.2f}",
            f"{trip:.2f}",
            f"{p50 / trip:.1f}",
        )

    print()
    table("drain, PostgreSQL", "jobs", "jobs/s", "last event after first claim, s")
    with_hooks: list[Drain] = []
    without: list[Drain] = []
    for run in range(runs):
        order = (True, False) if run % 2 == 0 else (False, True)
        for hooked in order:
            (with_hooks if hooked else without).append(drain_once(jobs, hooked))
    plain = statistics.median(d.jobs_per_s for d in without)
    hooked_rate = statistics.median(d.jobs_per_s for d in with_hooks)
    last = statistics.median(d.last_event_s or 0.0 for d in with_hooks)
    row("without webhooks", f"{jobs:,}", f"{plain:,.0f}", "")
    row("a webhook on every request", f"{jobs:,}", f"{hooked_rate:,.0f}", f"{last:.2f}")
    row("ratio with / without", "", f"{hooked_rate / plain:.2f}", "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
