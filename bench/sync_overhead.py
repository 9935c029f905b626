"""The sync route's overhead over the upstream call alone, both timed in one run.

For each store, a client (httpx, one call at a time, a kept-alive connection to each side)
makes pairs of calls with the same chat body: POST /v1/chat/completions on chatq, which
stores the request durably, has a worker call bench/slow_upstream.py with it and answers
with the result; and the same POST straight to that upstream. The order within a pair
alternates (chatq first, then the upstream first, ...), so the machine's other load falls on
both alike. chatq's answer must be a 200 whose content is the upstream's.

Overhead = chatq's time - the upstream's time, pair by pair; its p50 and p99 over a run's
pairs, then the median of --runs runs. ratio = chatq p50 / upstream p50. The upstream answers
after DELAY (0 by default, so its own time is the HTTP call alone). 20 pairs warm up first.
SQLite runs `chatq serve` (worker in the API's process), PostgreSQL `chatq api` + `chatq
worker` (woken by NOTIFY both ways).

A second table says where a chatq call's time goes, p50 of each stage over the timed calls
(then the median of runs), between the client's clock when it sent the call and read the
answer, and the request's created_at, started_at and completed_at as the store recorded
them (read through list_page; each is taken just before its statement runs): the submit
(HTTP, validation, up to the insert), the queue (insert and commit, waking the worker, up
to its claim), the run (the claim's write, the upstream call, up to the result's write),
and the answer (the result's write and commit, waking the waiter, its read, the response).

    python bench/sync_overhead.py      # 3 runs of 500 pairs per store, about a minute; --quick
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    arguments,
    chatq_server,
    chatq_worker,
    database_with_key,
    percentile,
    row,
    script_server,
    server_stack,
    summaries,
    table,
    upstream_config,
)

from chatq.domain import Summary

MODEL = "slow"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Quick, please."}]}
SYNC_PATH = "/v1/chat/completions"
WARM_UP = 20


@dataclass(frozen=True)
class Sample:
    chatq_ms: list[float]
    upstream_ms: list[float]
    stages_ms: dict[str, list[float]]  # STAGES -> each timed chatq call's time in it
    stack: str

    @property
    def overheads_ms(self) -> list[float]:
        return [c - u for c, u in zip(self.chatq_ms, self.upstream_ms, strict=True)]


@dataclass(frozen=True)
class Call:
    ms: float
    content: str  # the answer's
    sent: float  # time.time() when the call was made
    arrived: float  # time.time() once its answer was read
    request_id: str | None  # chatq's X-Request-Id


def timed(client: httpx.Client) -> Call:
    """One POST of BODY on client."""
    sent, began = time.time(), time.perf_counter()
    response = client.post(SYNC_PATH, json=BODY)
    took, arrived = (time.perf_counter() - began) * 1000, time.time()
    response.raise_for_status()
    content = str(response.json()["choices"][0]["message"]["content"])
    return Call(took, content, sent, arrived, response.headers.get("x-request-id"))


STAGES = (
    "sent -> created_at",
    "created_at -> started_at",
    "started_at -> completed_at",
    "completed_at -> answer read",
)


def stages_ms(call: Call, stored: Summary) -> list[float]:
    """Where a chatq call's time went (STAGES), from the client's clock and the store's
    timestamps (the machine's one wall clock)."""
    assert stored.started_at is not None and stored.completed_at is not None
    marks = (call.sent, stored.created_at, stored.started_at, stored.completed_at, call.arrived)
    return [1000 * (later - earlier) for earlier, later in itertools.pairwise(marks)]


def run_once(store: str, pairs: int, delay_s: float) -> Sample:
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
        headers = {"Authorization": f"Bearer {key}"}
        chatq = stack.enter_context(httpx.Client(base_url=server.url, headers=headers))
        direct = stack.enter_context(httpx.Client(base_url=upstream))  # the same path
        ours: list[Call] = []
        theirs: list[Call] = []
        for n in range(WARM_UP + pairs):
            order = (chatq, direct) if n % 2 == 0 else (direct, chatq)
            calls = {client is chatq: timed(client) for client in order}
            if calls[True].content != calls[False].content:
                raise RuntimeError(f"chatq answered {calls[True]}, the upstream {calls[False]}")
            if n >= WARM_UP:
                ours.append(calls[True])
                theirs.append(calls[False])
        recorded = {s.id: s for s in summaries(url, limit=len(ours))}
        each = [stages_ms(c, recorded[str(c.request_id)]) for c in ours]
        stages = {stage: [times[i] for times in each] for i, stage in enumerate(STAGES)}
        stack_line = f"{store}: server {server_stack(server.pid)}; client httpx"
        return Sample([c.ms for c in ours], [c.ms for c in theirs], stages, stack_line)


def main() -> int:
    parser = arguments(__doc__, "1 run of 20 pairs per store: a smoke test")
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.0, help="upstream answer time, s")
    args = parser.parse_args()
    runs, pairs = (1, 20) if args.quick else (args.runs, args.pairs)
    table(
        "store",
        "pairs",
        "upstream alone p50 ms",
        "chatq p50 ms",
        "overhead p50 ms",
        "overhead p99 ms",
        "ratio p50",
    )
    stacks = []
    stages: list[tuple[str, list[Sample]]] = []
    for store in args.stores:
        samples = [run_once(store, pairs, args.delay) for _ in range(runs)]
        upstream = statistics.median(percentile(s.upstream_ms, 50) for s in samples)
        chatq = statistics.median(percentile(s.chatq_ms, 50) for s in samples)
        overhead = statistics.median(percentile(s.overheads_ms, 50) for s in samples)
        overhead_p99 = statistics.median(percentile(s.overheads_ms, 99) for s in samples)
        row(
            store,
            f"{pairs * runs:,}",
            f"{upstream:.2f}",
            f"{chatq:.2f}",
            f"{overhead:.2f}",
            f"{overhead_p99:.2f}",
            f"{chatq / upstream:.2f}",
        )
        stacks.append(samples[-1].stack)
        stages.append((store, samples))
    print("\nWhere a chatq call's time goes, p50 ms (client clock and store timestamps):\n")
    table("store", *STAGES)
    for store, samples in stages:
        p50s = (statistics.median(percentile(s.stages_ms[k], 50) for s in samples) for k in STAGES)
        row(store, *(f"{p:.2f}" for p in p50s))
    print("\nLoaded: " + " | ".join(stacks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
