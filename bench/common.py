"""What the benchmarks share: processes, databases, clients, wrk, tables, and chatq's database.

Each script in bench/ imports from here (bench/ is on sys.path when one of them runs). No
script holds SQL on chatq's tables or a SQLite/asyncpg branch of its own: the database is
reached through the store (chatq.store) wherever a store verb says what a bench needs, and
the few things no verb offers are at the end of this file, each written once for both
dialects: an aggregate of finished requests that a bench polls while a worker drains, the
range of an owner's seqs, list_scale.py's bulk load, and the count of connections to a
database. (queue_drain.py reads pgqueuer's own tables, next to its pgqueuer side.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp.http_parser
import asyncpg
import httpx

from chatq.domain import JSON, NewRequest, Summary
from chatq.store import Store, open_store

T = TypeVar("T")

HERE = Path(__file__).parent
PATH = "/async/chat/completions"
OWNER = "bench"  # every bench's requests and keys belong to this owner
CHAT = {
    "request": {"model": "echo", "messages": [{"role": "user", "content": "How fast is chatq?"}]}
}


# ---- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A process started by a bench, serving HTTP at url."""

    url: str  # its base URL, http://127.0.0.1:PORT
    pid: int


@contextmanager
def process(*argv: str, ready: str) -> Iterator[Server]:
    """Run argv until the block ends (stopped by its own pid), once the URL ready answers;
    yield ready's base URL and the pid."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(ready, timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        log.seek(0)
                        tail = log.read().decode()[-2000:]
                        raise RuntimeError(f"{argv} did not start: {tail}") from None
                    time.sleep(0.1)
            yield Server(ready.rsplit("/", 1)[0], proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def script_server(
    script: str, *args: str, ready: str = "/healthz"
) -> AbstractContextManager[Server]:
    """`python bench/SCRIPT PORT ARGS...` on a free port, once its ready path answers."""
    port = free_port()
    argv = (sys.executable, str(HERE / script), str(port), *args)
    return process(*argv, ready=f"http://127.0.0.1:{port}{ready}")


def chatq(*args: str) -> str:
    """Run a chatq command to its end; the last line it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "chatq", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def chatq_server(command: str, url: str, *args: str) -> AbstractContextManager[Server]:
    """`chatq serve` or `chatq api` (with more args, such as --config) on a free port, once
    /healthz answers."""
    port = free_port()
    argv = (sys.executable, "-m", "chatq", command, "--database", url, "--port", str(port), *args)
    return process(*argv, ready=f"http://127.0.0.1:{port}/healthz")


@contextmanager
def chatq_worker(url: str, log: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], float]]:
    """A `chatq worker` process (more args: --config ...), stopped by its own pid, once it
    has printed its ready line; (process, seconds from launch to ready). Its log goes to
    log."""
    argv = [sys.executable, "-m", "chatq", "worker", "--database", url, *args]
    with log.open("w") as err:
        launched = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("chatq worker") and line.rstrip().endswith("ready"):
                    break
            else:
                raise RuntimeError(f"the worker did not start: {log.read_text()[-2000:]}")
            yield proc, time.monotonic() - launched
        finally:
            proc.terminate()
            proc.wait(timeout=60)


UPSTREAM_CONFIG = """\
[worker]
concurrency = {in_flight}

[[backends]]
name = "{model}"
type = "openai"
base_url = "{base_url}/v1"
models = ["{model}"]
max_concurrency = {in_flight}
timeout_s = 120
"""


def upstream_config(path: Path, upstream: str, model: str, in_flight: int) -> Path:
    """Write a chatq config to path that serves model from the OpenAI-compatible upstream
    at base URL upstream (bench/slow_upstream.py), with in_flight calls at once per worker
    and per backend; the path."""
    path.write_text(UPSTREAM_CONFIG.format(in_flight=in_flight, base_url=upstream, model=model))
    return path


# ---- processes, seen from outside


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a live process from /proc/PID/status: VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU time of a live process, start-up included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """User + system CPU time of the PostgreSQL server's processes on this machine (the
    benches' server is local), each since it started; processes that have exited count
    nothing, so take differences over a window in which the ones that matter live."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone since the listing
            continue
        name, fields = text.split(" (", 1)[1].rsplit(")", 1)
        if name == "postgres":
            values = fields.split()
            total += (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")
    return total


def sockets(pid: int) -> int:
    """How many sockets a live process holds open (listening, accepted, outgoing)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            if os.readlink(fd).startswith("socket:"):
                count += 1
    return count


def server_stack(pid: int) -> str:
    """The event loop and HTTP parser that a uvicorn process (chatq serve, chatq api) loaded,
    from its memory map: uvloop and httptools are C extensions, which show there once
    imported; without them uvicorn runs on asyncio's loop and parses with h11."""
    parser = "httptools" if "/httptools/" in Path(f"/proc/{pid}/maps").read_text() else "h11"
    return f"{event_loop_of(pid)} loop, {parser} parser"


def event_loop_of(pid: int) -> str:
    """The event loop a live process runs on, from its memory map (uvloop or asyncio's)."""
    return "uvloop" if "/uvloop/" in Path(f"/proc/{pid}/maps").read_text() else "asyncio"


def client_stack() -> str:
    """The event loop and HTTP parser of this process's aiohttp client (call it on the
    running loop)."""
    parser = aiohttp.http_parser.HttpResponseParser.__module__
    kind = "C" if parser == "aiohttp._http_parser" else "pure-Python"
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return f"{loop} loop, aiohttp's {kind} parser"


@contextmanager
def database(store: str, workdir: Path, name: str = "bench") -> Iterator[str]:
    """The URL of a fresh, empty database: a SQLite file in workdir, or a PostgreSQL database
    on CHATQ_TEST_POSTGRES's server, dropped when the block ends."""
    if store == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.db'}"
        return
    admin = os.environ.get("CHATQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    database = f"chatq_{name}_{os.getpid()}"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {database}"], check=True)
    try:
        yield admin.rsplit("/", 1)[0] + f"/{database}"
    finally:
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE {database} WITH (FORCE)"], check=True)


@contextmanager
def database_with_key(store: str, workdir: Path, name: str = "bench") -> Iterator[tuple[str, str]]:
    """A fresh database (see database()), migrated by `chatq migrate`, and a new API key of
    OWNER: (url, the key's secret)."""
    with database(store, workdir, name) as url:
        chatq("migrate", "--database", url)
        yield url, chatq("keys", "create", OWNER, "--database", url)


# ---- load and figures


def api_session(base: str, key: str, connections: int = 100) -> aiohttp.ClientSession:
    """An aiohttp session on chatq's API at base, with the key, at most connections open at
    once, and no overall timeout (long-polls and event streams last)."""
    return aiohttp.ClientSession(
        base,
        headers={"Authorization": f"Bearer {key}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=None, connect=30),
    )


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each server-sent event of a response, as they arrive (the lines end
    with LF or CRLF, as sse-starlette writes them; comments are skipped)."""
    event = "message"
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


def wrk(
    url: str,
    script: str,
    *,
    seconds: int,
    threads: int,
    connections: int,
    env: Mapping[str, str],
    fail_on: Sequence[str] = ("Non-2xx",),
    timeout_s: int = 2,
) -> tuple[float, float]:
    """(requests/s, p99 ms) of a wrk run with bench/SCRIPT; an error if wrk's report says
    any of fail_on. A response slower than timeout_s (wrk's default: 2) is not counted."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv.append(f"--timeout={timeout_s}s")
    out = subprocess.run(
        [*argv, "-s", str(HERE / script), url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout
    if any(word in out for word in fail_on):
        raise RuntimeError(f"errors during the run:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def arguments(doc: str, quick: str, *, stores: bool = True) -> argparse.ArgumentParser:
    """A bench's command line: --quick (what it does is the help text), --runs and, for a
    bench that runs on both stores, --stores."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--runs", type=int, default=3)
    if stores:
        parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    return parser


def row(*cells: object) -> None:
    """Print one row of a Markdown table, at once ("| a | b |"; an empty cell is "| |")."""
    print("|" + "".join(f" {c} |" if str(c) else " |" for c in cells), flush=True)


def table(*headers: str) -> None:
    """Print a Markdown table's header."""
    row(*headers)
    row(*["---"] * len(headers))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (1 to 99) of values."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# ---- the database, through the store


def with_store(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """work(store) on the store url names, opened for it and closed after."""

    async def run() -> T:
        store = await open_store(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def preload(
    url: str, requests: Iterable[JSON], at_once: int = 100, webhook_url: str | None = None
) -> None:
    """Migrate, then submit each request for OWNER through the store's own verb, at_once at a
    time, as the API would (no idempotency key; with webhook_url, each has that webhook)."""

    async def work(store: Store) -> None:
        await store.migrate()
        pending = iter(requests)
        while group := list(itertools.islice(pending, at_once)):
            new = [NewRequest.create(OWNER, r, webhook_url=webhook_url) for r in group]
            await asyncio.gather(*(store.submit(n) for n in new))

    with_store(url, work)


def summaries(url: str, limit: int | None = None) -> list[Summary]:
    """OWNER's requests, newest first (at most limit), as the store's list_page verb gives
    them."""

    async def work(store: Store) -> list[Summary]:
        found: list[Summary] = []
        before, more = None, True
        while more and (limit is None or len(found) < limit):
            size = 1000 if limit is None else min(1000, limit - len(found))
            page, more = await store.list_page(OWNER, size, before)
            found += page
            before = page[-1].seq if page else None
        return found

    return with_store(url, work)


# ---- the database, where no store verb says it


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of one statement that writes nothing, written with $1 placeholders (SQLite runs
    them as ?1, as the store does). Opens a connection of its own for it."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute(re.sub(r"\$(\d+)", r"?\1", sql), args).fetchall()
        finally:
            conn.close()

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def database_connections(url: str, pid: int) -> int:
    """Connections to the database. PostgreSQL: every backend connected to url's database
    (pg_stat_activity), whoever holds it, but the one this count opens. SQLite: the ones
    process pid holds, as its open handles on the database file (one per connection)."""
    if url.startswith("sqlite:///"):
        path = os.path.realpath(url.removeprefix("sqlite:///"))
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == path:
                    count += 1
        return count
    rows = query(url, CONNECTIONS)
    return int(rows[0][0])


CONNECTIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class Finished:
    """The requests that are COMPLETED or FAILED, as the database recorded them."""

    count: int
    failed: int
    first_started: float | None  # min(started_at): the first claim of a finished job
    last_finished: float | None  # max(completed_at or failed_at)


# One cheap aggregate, polled while a worker drains a queue: no store verb counts requests.
FINISHED = """
SELECT count(*), sum(CASE WHEN status = 'FAILED' THEN 1 ELSE 0 END),
       min(started_at), max(coalesce(completed_at, failed_at))
FROM requests WHERE status IN ('COMPLETED', 'FAILED')
"""


def finished(url: str) -> Finished:
    count, failed, first, last = query(url, FINISHED)[0]
    return Finished(int(count), int(failed or 0), first, last)


def seq_range(url: str, owner: str) -> tuple[int, int]:
    """(oldest, newest) seq of owner's requests: list_page gives the newest only."""
    low, high = query(url, "SELECT min(seq), max(seq) FROM requests WHERE owner = $1", owner)[0]
    return int(low), int(high)


def bulk_insert(url: str, table: str, rows: Iterator[dict[str, Any]]) -> None:
    """Insert rows (column -> value, the same columns in each) into a migrated database as
    fast as each dialect can: SQLite executemany in 50k-row transactions, PostgreSQL COPY.

    Not through the store: its only way in is submit, and submits alone took 3.2 s for
    20,000 requests on SQLite here (group-committed, 512 a transaction), where this loads
    20,000 finished rows in about 1 s; every submitted row would then still have to be
    claimed and completed or failed through the worker's verbs to get its status, and its
    timestamps would be the store's clock, not a history. For list_scale.py's 1M rows that
    is minutes more per database, for rows that chatq's own code builds anyway (see
    Templates there)."""
    first = next(rows, None)
    if first is None:
        return
    columns = tuple(first)
    values = (tuple(r.values()) for r in itertools.chain([first], rows))
    if url.startswith("sqlite:///"):
        marks = ", ".join("?" * len(columns))
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            while chunk := list(itertools.islice(values, 50_000)):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, chunk)
                conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return

    async def copy() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.copy_records_to_table(table, records=values, columns=columns)
            # What autovacuum does to a live table after this many inserts, done now.
            await conn.execute(f"VACUUM ANALYZE {table}")
        finally:
            await conn.close()

    asyncio.run(copy())
