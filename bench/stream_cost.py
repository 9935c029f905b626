"""What stream: true costs a job: the same jobs submitted with and without it, in one run.

For each store, chatq runs against bench/slow_upstream.py, whose answer is TOKENS tokens
(500) generated in TOKENS x TOKEN_DELAY seconds (10 ms a token: 5 s). A call that asks to
stream gets them as a provider sends them, one chat.completion.chunk event per token as it
is due; a call that does not gets the whole answer at the end of the same time. SQLite runs
`chatq serve`, PostgreSQL `chatq api` + `chatq worker`, both with `[worker] concurrency`
and the backend's `max_concurrency` at JOBS (100).

A wave is JOBS requests submitted at once over HTTP (aiohttp), so that JOBS jobs are in
flight together, all in one mode, each with the client a request of that mode would have:
without stream, GET .../{id}?wait=60 until it has finished; with stream, GET .../{id}/events
read to its done event, whose concatenated deltas must equal the final answer. Every answer
must be COMPLETED. A run is one wave of each mode, the order alternating run by run (plain
first, then stream first, ...), all on the same processes, after a warm-up wave of each.

Per wave: a job's wall time is completed_at - started_at as the store recorded them (the
worker's claim to its result: the upstream call, the text checkpoints and their
notifications, the result's write); an answer's time is the client's, from its submit to
the long-poll's answer or the done event. Also the CPU the chatq processes (serve; or api +
worker) and the upstream used during the wave. Each figure is the p50 over a wave's jobs,
then the median over --runs runs; ratio = stream / plain.

    python bench/stream_cost.py        # 5 runs per store, about 3 minutes; --quick: 20 jobs
"""

from __future__ import annotations

import asyncio
import json
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
    cpu_s,
    database_with_key,
    row,
    script_server,
    server_stack,
    sse_events,
    summaries,
    table,
    upstream_config,
)

MODEL = "slow"
MODES = ("plain", "stream")


@dataclass(frozen=True)
class Wave:
    """One wave of jobs in one mode."""

    job_s: float  # p50 of completed_at - started_at
    answer_s: float  # p50 of the client's submit -> answer
    chatq_cpu_s: float
    upstream_cpu_s: float


def body(stream: bool) -> dict[str, object]:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me all."}]}
    return {"request": {**request, "stream": True} if stream else request}


async def plain_job(session: aiohttp.ClientSession) -> tuple[str, float]:
    """Submit without stream, long-poll until finished; (id, seconds to the answer)."""
    began = time.perf_counter()
    async with session.post(PATH, json=body(False)) as created:
        answer = await created.json()
    while answer["status"] not in ("COMPLETED", "FAILED"):
        async with session.get(f"{PATH}/{answer['id']}", params={"wait": "60"}) as waited:
            answer = await waited.json()
    took = time.perf_counter() - began
    if answer["status"] != "COMPLETED":
        raise RuntimeError(f"a plain job failed: {answer}")
    return answer["id"], took


async def streamed_job(session: aiohttp.ClientSession) -> tuple[str, float]:
    """Submit with stream, read its events to done; (id, seconds to the done event)."""
    began = time.perf_counter()
    async with session.post(PATH, json=body(True)) as created:
        request_id = (await created.json())["id"]
    text: list[str] = []
    async with session.get(f"{PATH}/{request_id}/events") as events:
        async for event, data in sse_events(events):
            if event == "status" and text and json.loads(data)["run"] > 1:
                text.clear()  # a new run's text starts over (a worker restarted it)
            elif event == "delta":
                text.append(json.loads(data)["content"])
            elif event == "done":
                took = time.perf_counter() - began
                done = json.loads(data)
                break
        else:
            raise RuntimeError(f"the events of {request_id} ended without done")
    if done["status"] != "COMPLETED":
        raise RuntimeError(f"a streamed job failed: {done}")
    if "".join(text) != done["response"]["choices"][0]["message"]["content"]:
        raise RuntimeError(f"the deltas of {request_id} are not its answer")
    return request_id, took


async def wave(base: str, key: str, mode: str, jobs: int) -> list[tuple[str, float]]:
    job = streamed_job if mode == "stream" else plain_job
    async with api_session(base, key, connections=2 * jobs + 8) as session:
        return list(await asyncio.gather(*(job(session) for _ in range(jobs))))


def timed_wave(
    url: str, base: str, key: str, mode: str, jobs: int, chatq_pids: list[int], upstream_pid: int
) -> Wave:
    cpu_before = [cpu_s(pid) for pid in (*chatq_pids, upstream_pid)]
    done = asyncio.run(wave(base, key, mode, jobs))
    cpu = [cpu_s(pid) - b for pid, b in zip((*chatq_pids, upstream_pid), cpu_before, strict=True)]
    ids = {request_id for request_id, _ in done}
    recorded = [s for s in summaries(url, limit=jobs) if s.id in ids]
    if len(recorded) != jobs:
        raise RuntimeError(f"{len(recorded)} of the {jobs} jobs of the wave are the newest")
    walls = [s.completed_at - s.started_at for s in recorded if s.completed_at and s.started_at]
    return Wave(
        statistics.median(walls),
        statistics.median(took for _, took in done),
        sum(cpu[:-1]),
        cpu[-1],
    )


def run_store(
    store: str, runs: int, jobs: int, tokens: int, token_delay_s: float
) -> tuple[dict[str, list[Wave]], str]:
    """mode -> its waves, one per run; and what the processes loaded."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        url, key = stack.enter_context(database_with_key(store, workdir))
        delay = str(tokens * token_delay_s)
        upstream = stack.enter_context(script_server("slow_upstream.py", delay, str(tokens)))
        config = str(upstream_config(workdir / "chatq.toml", upstream.url, MODEL, jobs))
        if store == "sqlite":
            server = stack.enter_context(chatq_server("serve", url, "--config", config))
            pids = [server.pid]
        else:
            server = stack.enter_context(chatq_server("api", url, "--config", config))
            log = workdir / "worker.log"
            worker, _ = stack.enter_context(chatq_worker(url, log, "--config", config))
            pids = [server.pid, worker.pid]
        for mode in MODES:  # warm-up: connections, pools, the listener
            asyncio.run(wave(server.url, key, mode, min(jobs, 10)))
        waves: dict[str, list[Wave]] = {mode: [] for mode in MODES}
        for run in range(runs):
            for mode in MODES if run % 2 == 0 else reversed(MODES):
                waves[mode].append(timed_wave(url, server.url, key, mode, jobs, pids, upstream.pid))
        stacks = f"{store}: server {server_stack(server.pid)}; client {asyncio.run(_client())}"
        return waves, stacks


async def _client() -> str:
    return client_stack()


def median(waves: list[Wave], field: str) -> float:
    return float(statistics.median(getattr(w, field) for w in waves))


def main() -> int:
    parser = arguments(__doc__, "1 run of 20 jobs, 500 tokens at 2 ms: a smoke test")
    parser.set_defaults(runs=5)
    parser.add_argument("--jobs", type=int, default=100, help="jobs in flight in a wave")
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--token-delay", type=float, default=0.01, help="upstream, s a token")
    args = parser.parse_args()
    if args.quick:
        runs, jobs, tokens, token_delay_s = 1, 20, 500, 0.002
    else:
        runs, jobs, tokens, token_delay_s = args.runs, args.jobs, args.tokens, args.token_delay
    table(
        "store",
        "jobs in flight",
        "tokens",
        "upstream s",
        "plain job p50 s",
        "stream job p50 s",
        "plain answer p50 s",
        "stream answer p50 s",
        "chatq CPU s plain / stream",
        "upstream CPU s plain / stream",
        "ratio answer",
        "ratio job",
    )
    stacks = []
    for store in args.stores:
        waves, loaded = run_store(store, runs, jobs, tokens, token_delay_s)
        plain_job, stream_job = (median(waves[m], "job_s") for m in MODES)
        plain_answer, stream_answer = (median(waves[m], "answer_s") for m in MODES)
        row(
            store,
            jobs,
            tokens,
            f"{tokens * token_delay_s:g}",
            f"{plain_job:.3f}",
            f"{stream_job:.3f}",
            f"{plain_answer:.3f}",
            f"{stream_answer:.3f}",
            " / ".join(f"{median(waves[m], 'chatq_cpu_s'):.2f}" for m in MODES),
            " / ".join(f"{median(waves[m], 'upstream_cpu_s'):.2f}" for m in MODES),
            f"{stream_answer / plain_answer:.3f}",
            f"{stream_job / plain_job:.3f}",
        )
        stacks.append(loaded)
    print("\nLoaded: " + " | ".join(stacks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
