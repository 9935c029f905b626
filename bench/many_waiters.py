"""Many waiters on one API process: 1,000 long-polls and 1,000 event streams held at once.

For each store, one `chatq api` runs alone (no worker: every request stays CREATED, so every
waiter waits) over LONG_POLLS + STREAMS requests submitted beforehand through the store's
own verb. The bench (aiohttp, one connection per waiter) first warms the API up in a
session of its own: 2 x 100 plain GETs at once, which fill PostgreSQL's pool to its working
size, then one short long-poll and one event stream, which start the listener (and the
poller). That session is closed, the API goes quiet, and the "before" reading is taken.
Then it opens, all at once, GET .../{id}?wait=60 on LONG_POLLS requests and
GET .../{id}/events on STREAMS others. A stream is open once its first event (the
request's status) has arrived; the long-polls are held once the API holds a socket for
every waiter and its CPU has gone quiet (parked, not queued). The "held" reading is the
highest seen over HOLD seconds from then. Then every request is cancelled through the API
(POST .../{id}/cancel: CREATED -> FAILED at once): each long-poll must answer with its
request FAILED and each stream end with a done event that says so ("answered"). The
session is closed, the API goes quiet again, and the "after" reading is taken.

A reading: the API process's RSS (VmRSS of /proc/PID/status) and its database connections:
on PostgreSQL every backend connected to the bench's database (pg_stat_activity; only this
API connects to it: a pool of up to pool_size, default 10, and the listener), on SQLite the
API's open handles on the database file (a reader and a writer). RSS growth = held -
before; ratio = held / before; RSS peak is VmHWM at the end (the opening burst included).
Each figure is the median of --runs runs.

Each waiter is a socket on both sides: the bench raises its soft limit of open files (which
the API process inherits) to what that takes, within the hard limit, and says so.

    python bench/many_waiters.py          # 3 runs per store, about 3 minutes; --quick: 100 + 100
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from common import (
    CHAT,
    PATH,
    api_session,
    arguments,
    chatq_server,
    client_stack,
    cpu_s,
    database_connections,
    database_with_key,
    preload,
    row,
    rss_mb,
    server_stack,
    sockets,
    sse_events,
    summaries,
    table,
)

WAIT_S = 60  # the longest long-poll: everything must be held and cancelled within it


@dataclass(frozen=True)
class Reading:
    rss_mb: float
    peak_rss_mb: float  # VmHWM: the highest RSS of the process so far
    connections: int
    sockets: int


@dataclass(frozen=True)
class Sample:
    before: Reading
    held: Reading  # the highest RSS and connection count seen while held
    after: Reading
    answered: int
    stacks: str


def read(url: str, pid: int) -> Reading:
    return Reading(rss_mb(pid), rss_mb(pid, "VmHWM"), database_connections(url, pid), sockets(pid))


def raise_open_files(needed: int) -> str:
    """Raise this process's soft limit of open files to needed (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"open files: soft limit {soft} (hard {hard}), {needed} needed"
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"{needed} open files needed; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return f"open files: soft limit raised from {soft} to {needed} (hard {hard})"


async def quiet(pid: int, timeout: float = 30) -> None:
    """Return once the process uses under a tenth of a core over half a second."""
    deadline = time.monotonic() + timeout
    last = cpu_s(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_s(pid)
        if now - last < 0.05:
            return
        last = now
    raise RuntimeError(f"the API (pid {pid}) did not go quiet within {timeout:g} s")


async def plain_get(session: aiohttp.ClientSession, request_id: str) -> None:
    async with session.get(f"{PATH}/{request_id}") as response:
        assert response.status == 200, response.status
        await response.read()


async def long_poll(session: aiohttp.ClientSession, request_id: str) -> str:
    """Hold a long-poll; the status it answers with."""
    async with session.get(f"{PATH}/{request_id}", params={"wait": str(WAIT_S)}) as response:
        assert response.status == 200, response.status
        return str((await response.json())["status"])


async def event_stream(session: aiohttp.ClientSession, request_id: str, opened: Opened) -> str:
    """Hold an event stream until its done event; the status that event gives."""
    async with session.get(f"{PATH}/{request_id}/events") as response:
        assert response.status == 200, response.status
        first = True
        async for event, data in sse_events(response):
            if first:
                opened.one()
                first = False
            if event == "done":
                return str(json.loads(data)["status"])
    raise RuntimeError(f"the event stream of {request_id} ended without a done event")


class Opened:
    """Counts event streams whose first event has arrived."""

    def __init__(self, expected: int) -> None:
        self.count, self._expected, self.all = 0, expected, asyncio.Event()
        if expected == 0:
            self.all.set()

    def one(self) -> None:
        self.count += 1
        if self.count >= self._expected:
            self.all.set()


async def hold(
    base: str, key: str, url: str, pid: int, ids: list[str], long_polls: int, hold_s: float
) -> Sample:
    polled, streamed = ids[:long_polls], ids[long_polls:]
    loop = asyncio.get_running_loop()

    async def reading() -> Reading:
        return await loop.run_in_executor(None, read, url, pid)

    # Warm-up: the pool at its working size, the listener and the poller started; its
    # connections are closed before the reading, so that every waiter opens one of its own.
    async with api_session(base, key) as session:
        for _ in range(2):
            await asyncio.gather(*(plain_get(session, i) for i in ids[:100]))
        async with session.get(f"{PATH}/{ids[0]}", params={"wait": "0.5"}) as response:
            await response.read()
        async with session.get(f"{PATH}/{ids[0]}/events") as response:
            await response.content.readline()
    await quiet(pid)
    before = await reading()

    async with api_session(base, key, connections=len(ids) + 64) as session:
        started = time.monotonic()
        opened = Opened(len(streamed))
        tasks = [asyncio.ensure_future(long_poll(session, i)) for i in polled] + [
            asyncio.ensure_future(event_stream(session, i, opened)) for i in streamed
        ]
        await asyncio.wait_for(opened.all.wait(), WAIT_S / 2)
        while (await reading()).sockets < before.sockets + len(ids):
            if time.monotonic() - started > WAIT_S / 2:
                raise RuntimeError("the API did not accept every waiter in time")
            await asyncio.sleep(0.2)
        await quiet(pid)
        held = await reading()
        until = time.monotonic() + hold_s
        while time.monotonic() < until:
            await asyncio.sleep(0.5)
            now = await reading()
            held = Reading(
                max(held.rss_mb, now.rss_mb),
                now.peak_rss_mb,
                max(held.connections, now.connections),
                max(held.sockets, now.sockets),
            )
        if time.monotonic() - started > WAIT_S * 0.8:
            raise RuntimeError("held too long: the long-polls would time out before the cancel")

        cancels = asyncio.Semaphore(32)

        async def cancel(request_id: str) -> None:
            async with cancels, session.post(f"{PATH}/{request_id}/cancel") as response:
                assert response.status == 200, response.status

        await asyncio.gather(*(cancel(i) for i in ids))
        statuses = await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        stacks = f"server {server_stack(pid)}; client {client_stack()}"
    await quiet(pid)
    after = await reading()
    return Sample(before, held, after, statuses.count("FAILED"), stacks)


def run_once(store: str, long_polls: int, streams: int, hold_s: float) -> Sample:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url, key = stack.enter_context(database_with_key(store, Path(tmp)))
        preload(url, [CHAT["request"]] * (long_polls + streams))
        ids = [s.id for s in summaries(url)]
        server = stack.enter_context(chatq_server("api", url))
        return asyncio.run(hold(server.url, key, url, server.pid, ids, long_polls, hold_s))


WHEN = ("before", "held", "after")


def median(samples: list[Sample], when: str, field: str) -> float:
    """The median over samples of a field of the reading taken when (one of WHEN)."""
    return float(statistics.median(getattr(getattr(s, when), field) for s in samples))


def main() -> int:
    parser = arguments(__doc__, "1 run of 100 long-polls + 100 event streams: a smoke test")
    parser.add_argument("--long-polls", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=1000, help="event streams")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds held at full count")
    args = parser.parse_args()
    runs, long_polls, streams, hold_s = (
        (1, 100, 100, 1.0) if args.quick else (args.runs, args.long_polls, args.streams, args.hold)
    )
    limits = raise_open_files(long_polls + streams + 1024)
    table(
        "store",
        "long-polls",
        "event streams",
        "answered",
        "RSS before MB",
        "RSS held MB",
        "RSS growth MB",
        "RSS after MB",
        "RSS peak MB",
        "DB connections before / held / after",
        "ratio RSS held / before",
    )
    stacks = []
    for store in args.stores:
        samples = [run_once(store, long_polls, streams, hold_s) for _ in range(runs)]
        before, held, after = (median(samples, when, "rss_mb") for when in WHEN)
        connections = " / ".join(f"{median(samples, w, 'connections'):g}" for w in WHEN)
        row(
            store,
            f"{long_polls:,}",
            f"{streams:,}",
            f"{min(s.answered for s in samples):,}",
            f"{before:.0f}",
            f"{held:.0f}",
            f"{held - before:.0f}",
            f"{after:.0f}",
            f"{median(samples, 'after', 'peak_rss_mb'):.0f}",
            connections,
            f"{held / before:.2f}",
        )
        stacks.append(f"{store}: {samples[-1].stacks}")
    print(f"\n{limits}.\nLoaded: " + " | ".join(stacks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
