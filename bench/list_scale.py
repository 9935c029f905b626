"""List latency at scale: p99 of a list page with 10k vs 1M requests under one owner,
unfiltered and filtered on a status (status=FAILED, 1 row in 20).

For each store (SQLite, PostgreSQL) two databases are seeded, one with --small and one with
--big requests, all under one owner. Seeding goes through the store's own schema in bulk
(after `chatq migrate`; 1M submits over HTTP would take far too long): rows as real submits
and a worker leave them, built with chatq's own request, fingerprint and response code, with
a mix of statuses (1 in 20 FAILED, the rest COMPLETED, the newest 20 CREATED and the 20
before them IN_PROGRESS). Two layers are measured, each a page of limit=20:

- HTTP: a `chatq api` per database; wrk (16 connections) loads
  GET /async/chat/completions?limit=20, the first page, then deep pages (a next_token per
  request, picked among 256 depths spread over the whole history); then the same with
  &status=FAILED (its tokens bound to that filter, as the server issues them). The sizes
  take turns in short bursts (A B, B A, ...) so that the machine's other load falls on both
  alike.
- list_page verb: the store called in process, one call at a time, the sizes taking turns
  call by call: the query alone, without HTTP.

Each figure is the median of --runs runs; the ratio is p99 at --big / p99 at --small.
Target: <= 1.5.

    apt-get install wrk        # the load generator
    python bench/list_scale.py          # about 8 minutes on 2 cores; --quick: a smoke run
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import (
    OWNER,
    PATH,
    arguments,
    bulk_insert,
    chatq_server,
    database_with_key,
    row,
    seq_range,
    summaries,
    table,
    with_store,
    wrk,
)

from chatq.api.models import AsyncApiChatCompletionsRequest
from chatq.api.pagination import TokenCodec
from chatq.backends.normalize import completion_response
from chatq.domain import NO_FILTER, ListFilter, Status, request_fingerprint
from chatq.json_text import dumps
from chatq.store import Store, open_store

LIMIT = 20
DEPTHS = 256
PENDING = 20  # the newest rows: this many CREATED, and as many IN_PROGRESS before them
FAILED_EVERY = 20
IDEMPOTENT_EVERY = 10
SPACING_S = 0.25  # between two submits
ERROR = "gave up after 3 attempt(s); last error: upstream answered 503 Service Unavailable"
Row = dict[str, Any]  # a row of the requests table, by column
# The lists loaded: each its query string, and the filter the store applies for it.
LISTS = {
    "": ("", NO_FILTER),
    "status=FAILED": ("&status=FAILED", ListFilter(statuses=frozenset({Status.FAILED}))),
}

# ---- seeding


def _content(i: int) -> str:
    return f"How fast is chatq? #{i}"


class Templates:
    """Stored text for request i, from chatq's own code once, then filled in by replace()."""

    def __init__(self) -> None:
        chat = {"model": "echo", "messages": [{"role": "user", "content": "@CONTENT@"}]}
        # What the submit route stores: the validated request, as the client set it.
        body = AsyncApiChatCompletionsRequest.model_validate({"request": chat})
        self.request_dict = body.request.model_dump(exclude_unset=True)
        self.request = dumps(self.request_dict)
        self.canonical = json.dumps(
            self.request_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        words = len(_content(0).split())
        # What the echo backend answers and the worker stores on completion.
        response = completion_response("@ID@", "echo", "@CONTENT@", words, words)
        self.response = dumps({**response, "created": "@CREATED@"}).replace(
            '"@CREATED@"', "@CREATED@"
        )

    def check(self, seeded: Row) -> None:
        """The templated row is what chatq's own functions make of the same request."""
        request = json.loads(seeded["request"])
        assert seeded["request"] == dumps(request), seeded
        assert seeded["request_hash"] == request_fingerprint(request), seeded
        if seeded["response"] is not None:
            response = json.loads(seeded["response"])
            content = request["messages"][0]["content"]
            words = len(content.split())
            expected = completion_response(seeded["id"], "echo", content, words, words)
            assert seeded["response"] == dumps({**expected, "created": response["created"]})


def seed_rows(count: int, now: float, templates: Templates) -> Iterator[Row]:
    """count requests of OWNER in submit order (oldest first), ending just before now: a row
    of the requests table each, by column."""
    start = now - count * SPACING_S
    for i in range(1, count + 1):
        request_id = str(uuid.uuid4())
        content = _content(i)
        created = start + i * SPACING_S
        started = created + 0.004
        finished = started + 0.35
        if i > count - PENDING:
            status = "CREATED"
        elif i > count - 2 * PENDING:
            status = "IN_PROGRESS"
        elif i % FAILED_EVERY == 0:
            status = "FAILED"
        else:
            status = "COMPLETED"
        response = (
            templates.response.replace("@ID@", request_id)
            .replace("@CONTENT@", content)
            .replace("@CREATED@", str(int(finished)))
            if status == "COMPLETED"
            else None
        )
        canonical = templates.canonical.replace("@CONTENT@", content)
        yield {
            "id": request_id,
            "owner": OWNER,
            "model": "echo",
            "status": status,
            "request": templates.request.replace("@CONTENT@", content),
            "request_hash": hashlib.sha256(canonical.encode()).hexdigest(),
            "idempotency_key": f"bench-{i}" if i % IDEMPOTENT_EVERY == 0 else None,
            "created_at": created,
            "started_at": started if status != "CREATED" else None,
            "completed_at": finished if status == "COMPLETED" else None,
            "failed_at": finished if status == "FAILED" else None,
            "response": response,
            "error_message": ERROR if status == "FAILED" else None,
            "deliveries": 0 if status == "CREATED" else 1,
            "lease_owner": "bench-worker" if status == "IN_PROGRESS" else None,
            "lease_expires_at": now + 3600 if status == "IN_PROGRESS" else None,
        }


def _checked(rows: Iterator[Row], templates: Templates) -> Iterator[Row]:
    for n, seeded in enumerate(rows):
        if n % 99_991 == 0 or (seeded["status"] == "FAILED" and n < 100):
            templates.check(seeded)
        yield seeded


def seed(url: str, count: int) -> None:
    templates = Templates()
    bulk_insert(url, "requests", _checked(seed_rows(count, time.time(), templates), templates))


# ---- databases and tokens


@dataclass(frozen=True)
class Deep:
    """Where one list's deep pages start: each page lists the rows before one of seqs,
    which tokens name as the server would (bound to the list's filter)."""

    seqs: list[int]
    tokens: list[str]


@dataclass(frozen=True)
class Database:
    url: str
    key: str
    deep: dict[str, Deep]  # by LISTS name


@contextmanager
def seeded(store: str, count: int, workdir: Path) -> Iterator[Database]:
    """A fresh database holding count requests of OWNER, with a key and deep-page tokens."""
    with database_with_key(store, workdir, f"list_{count}") as (url, key):
        began = time.monotonic()
        seed(url, count)
        print(
            f"{store}: seeded {count:,} requests in {time.monotonic() - began:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        low, high = seq_range(url, OWNER)
        codec = token_codec(url)
        rng = random.Random(count)
        deep = {}
        for name, (_, narrowed) in LISTS.items():
            # Deep enough that a whole page lies below, filtered or not.
            floor = low + (FAILED_EVERY if name else 1) * (LIMIT + 1)
            seqs = [rng.randint(floor, high - LIMIT) for _ in range(DEPTHS)]
            tokens = [codec.encode(OWNER, seq, narrowed.scope()) for seq in seqs]
            deep[name] = Deep(seqs, tokens)
        yield Database(url, key, deep)


def token_codec(url: str) -> TokenCodec:
    """The server's own next_token codec: made with the secret the server will use (the
    store's own get-or-create, which `chatq api` calls at start), so each token made with it
    is one the server itself could have returned."""

    async def secret(store: Store) -> bytes:
        return await store.secret("next_token")

    return TokenCodec(with_store(url, secret))


def check_pages(base: str, db: Database) -> None:
    """The pages wrk will load are what the store holds, next_token included."""
    newest = [s.id for s in summaries(db.url, limit=2 * LIMIT + 1)]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {db.key}"}) as client:
        first = client.get(PATH, params={"limit": LIMIT}).json()
        assert [r["id"] for r in first["requests"]] == newest[:LIMIT], first
        second = client.get(PATH, params={"limit": LIMIT, "next_token": first["next_token"]})
        assert [r["id"] for r in second.json()["requests"]] == newest[LIMIT : 2 * LIMIT]
        for name, (query, narrowed) in LISTS.items():
            for seq, token in list(zip(db.deep[name].seqs, db.deep[name].tokens, strict=True))[:8]:
                deep = client.get(f"{PATH}?limit={LIMIT}{query}&next_token={token}").json()
                assert len(deep["requests"]) == LIMIT and deep["next_token"], deep
                held = stored_page(db.url, seq, narrowed)
                assert [r["id"] for r in deep["requests"]] == held, (name, seq)
                finished = [r for r in deep["requests"] if r["status"] in ("COMPLETED", "FAILED")]
                one = client.get(f"{PATH}/{finished[0]['id']}").json()
                assert one["response"] is not None or one["error_message"], one


def stored_page(url: str, before: int, narrowed: ListFilter) -> list[str]:
    """The ids of the page below before, as the store lists them."""

    async def page(store: Store) -> list[str]:
        rows, _ = await store.list_page(OWNER, LIMIT, before, narrowed)
        return [r.id for r in rows]

    return with_store(url, page)


# ---- load


def run_wrk(
    url: str, script: str, seconds: int, connections: int, env: dict[str, str]
) -> tuple[float, float]:
    """(requests/s, p99 ms) for one wrk thread; a socket error fails the run too."""
    fail_on = ("Non-2xx", "Socket errors")
    return wrk(
        url, script, seconds=seconds, threads=1, connections=connections, env=env, fail_on=fail_on
    )


PAGES = (("first page", "get.lua"), ("deep pages", "deep.lua"))


def page_name(page: str, list_name: str) -> str:
    return f"{page}, {list_name}" if list_name else page


Sample = dict[str, tuple[float, float]]  # "page (layer)" -> (requests/s, p99 ms)


def measure_http(dbs: list[Database], seconds: int, bursts: int, connections: int) -> list[Sample]:
    """One run: a fresh `chatq api` per database, all up at once; wrk loads one at a time.

    For each page, the databases take turns in bursts (order A B, then B A, ...), so that a
    change in the machine's load touches every size alike; each figure is the median burst.
    """
    with ExitStack() as stack:
        bases = [stack.enter_context(chatq_server("api", db.url)).url for db in dbs]
        for base, db in zip(bases, dbs, strict=True):
            check_pages(base, db)
            env = {"KEY": db.key, "TOKENS": ",".join(db.deep[""].tokens)}
            run_wrk(f"{base}{PATH}?limit={LIMIT}", "deep.lua", 1, connections, env)  # warm up
        bursts_of: list[dict[str, list[tuple[float, float]]]] = [{} for _ in dbs]
        for list_name, (query, _) in LISTS.items():
            for page, script in PAGES:
                for burst in range(bursts):
                    order = range(len(dbs)) if burst % 2 == 0 else reversed(range(len(dbs)))
                    for i in order:
                        tokens = ",".join(dbs[i].deep[list_name].tokens)
                        env = {"KEY": dbs[i].key, "TOKENS": tokens}
                        target = f"{bases[i]}{PATH}?limit={LIMIT}{query}"
                        result = run_wrk(target, script, seconds, connections, env)
                        name = f"{page_name(page, list_name)} (HTTP)"
                        bursts_of[i].setdefault(name, []).append(result)
    return [{name: _median_pair(results) for name, results in found.items()} for found in bursts_of]


def _median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def measure_verbs(dbs: list[Database], calls: int) -> list[Sample]:
    """The store's list_page verb called in process, one call at a time (no HTTP, no load).

    The databases take turns call by call, so that the machine's other work (which decides
    the tail at these sub-millisecond times) falls on every size alike.
    """

    async def timed() -> list[Sample]:
        stores = [await open_store(db.url) for db in dbs]
        try:
            samples: list[Sample] = [{} for _ in dbs]
            for (list_name, (_, narrowed)), (page, _) in itertools.product(LISTS.items(), PAGES):
                took: list[list[float]] = [[] for _ in dbs]
                for n in range(calls + calls // 10):
                    for i, (db, store) in enumerate(zip(dbs, stores, strict=True)):
                        seqs = db.deep[list_name].seqs
                        seq = None if page == "first page" else seqs[n % len(seqs)]
                        began = time.perf_counter()
                        rows, more = await store.list_page(OWNER, LIMIT, seq, narrowed)
                        took[i].append(time.perf_counter() - began)
                        assert len(rows) == LIMIT and more
                for sample, times in zip(samples, took, strict=True):
                    times = times[calls // 10 :]  # the first tenth warms the caches up
                    p99 = statistics.quantiles(times, n=100)[98] * 1000
                    name = f"{page_name(page, list_name)} (list_page verb)"
                    sample[name] = (len(times) / sum(times), p99)
            return samples
        finally:
            for store in stores:
                await store.close()

    return asyncio.run(timed())


def main() -> int:
    parser = arguments(__doc__, "1k vs 20k rows, 1 run, 1 s bursts")
    parser.add_argument("--seconds", type=int, default=3, help="length of one wrk burst")
    parser.add_argument("--bursts", type=int, default=4, help="wrk bursts per size and page")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (<= 64)")
    parser.add_argument("--calls", type=int, default=5000, help="list_page calls per page")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/list_scale.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    if args.quick:
        runs, seconds, bursts, calls, small, big = 1, 1, 1, 500, 1_000, 20_000
    else:
        runs, seconds, bursts, calls = args.runs, args.seconds, args.bursts, args.calls
        small, big = args.small, args.big
    table(
        "store",
        "page",
        f"p99 ms at {small:,}",
        f"p99 ms at {big:,}",
        f"req/s at {small:,}",
        f"req/s at {big:,}",
        "p99 ratio",
    )
    for store in args.stores:
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            dbs = [stack.enter_context(seeded(store, n, Path(tmp))) for n in (small, big)]
            samples = []  # per run, per size
            for _ in range(runs):
                http = measure_http(dbs, seconds, bursts, args.connections)
                verbs = measure_verbs(dbs, calls)
                samples.append([{**h, **v} for h, v in zip(http, verbs, strict=True)])
        for name in samples[0][0]:
            (rate_s, p99_s), (rate_b, p99_b) = (
                _median_pair([run[size][name] for run in samples]) for size in range(2)
            )
            p99s = (f"{p99:.3g}" for p99 in (p99_s, p99_b))
            rates = (f"{rate:,.0f}" for rate in (rate_s, rate_b))
            row(store, name, *p99s, *rates, f"{p99_b / p99_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
