"""Queue drain on PostgreSQL: chatq's worker against pgqueuer, on the same server, same run.

Each side gets a fresh database on the same PostgreSQL server and --jobs jobs pre-loaded
before its consumer starts; then one consumer process drains them.

- chatq: the jobs go in through the store's submit verb (model `echo`, an instant backend);
  then one `chatq worker` process (default settings: concurrency 256) runs them.
- pgqueuer: the jobs go in with Queries.enqueue (one entrypoint, the same JSON payload);
  then one process runs a PgQueuer whose entrypoint does nothing, in drain mode.

What is timed is the drain as the database recorded it: from the first claim to the last
completion. chatq: min(started_at) to max(completed_at) over the jobs. pgqueuer: the first
'picked' to the last 'successful' row of pgqueuer_log (both NOW() of the transaction that
wrote them). Process start-up is not in it. Figures: jobs/s, median of --runs; the ratio
is chatq / pgqueuer. Beside them, chatq's CPU per job: the worker's, and that of all of
PostgreSQL's processes, from the first poll that sees jobs done to the end of the drain.
(The file is not called queue.py: bench/ is on sys.path when a script in it runs, and a
queue.py there would shadow the standard library's queue.)

    pip install -e '.[bench]'       # pgqueuer
    python bench/queue_drain.py     # about 2 minutes; --quick for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
from common import (
    arguments,
    cpu_s,
    database,
    event_loop_of,
    finished,
    postgres_cpu_s,
    preload,
    query,
    row,
    table,
)

from chatq import event_loop

ECHO_ONLY = '[[backends]]\nname = "echo"\ntype = "echo"\nmodels = ["echo"]\n'
TIMEOUT_S = 600.0


def chat(i: int) -> dict[str, object]:
    return {"model": "echo", "messages": [{"role": "user", "content": f"job {i}"}]}


async def preload_pgqueuer(url: str, jobs: int) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        for start in range(0, jobs, 5_000):
            count = min(jobs, start + 5_000) - start
            payloads: list[bytes | None] = [
                json.dumps(chat(start + i)).encode() for i in range(count)
            ]
            await queries.enqueue(["noop"] * count, payloads, [0] * count)
    finally:
        await conn.close()


# pgqueuer's tables, read the way its own log records a drain.
PGQ_DONE = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
PGQ_DRAIN = """
SELECT extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                        - min(created) FILTER (WHERE status = 'picked'))
FROM pgqueuer_log
"""


def wait_until(done: Callable[[], int], jobs: int, proc: subprocess.Popen[bytes]) -> str:
    """Poll done() (gently: 5 times a second) until it returns jobs; the event loop proc
    runs on, read while it works (pgqueuer's consumer exits once the queue is empty)."""
    deadline = time.monotonic() + TIMEOUT_S
    loop = "unknown"
    while (count := done()) != jobs:
        if count and loop == "unknown" and proc.poll() is None:
            loop = event_loop_of(proc.pid)
        if proc.poll() is not None and proc.returncode != 0:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not drained within {TIMEOUT_S:g}s")
        time.sleep(0.2)
    return loop


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=60)


@dataclass(frozen=True, slots=True)
class ChatqDrain:
    seconds: float  # from the first claim to the last COMPLETED
    loop: str  # the worker's event loop
    # CPU per job (µs) of the worker and of PostgreSQL's processes, from the first poll
    # that saw jobs done to the end (start-up left out); None if the drain ended first.
    worker_us: float | None
    postgres_us: float | None


def drain_chatq(jobs: int, concurrency: int, workdir: Path) -> ChatqDrain:
    config = workdir / "echo.toml"
    config.write_text(ECHO_ONLY)
    with database("postgres", workdir) as url, tempfile.TemporaryFile() as log:
        preload(url, (chat(i) for i in range(jobs)))  # the store's own submit verb
        argv = [sys.executable, "-m", "chatq", "worker", "--database", url]
        argv += ["--concurrency", str(concurrency)]
        proc = subprocess.Popen([*argv, "--config", str(config)], stdout=log, stderr=log)
        first: tuple[int, float, float] | None = None  # (jobs done, worker CPU, postgres CPU)

        def done() -> int:
            nonlocal first
            count = finished(url).count
            if count and first is None:
                first = (count, cpu_s(proc.pid), postgres_cpu_s())
            return count

        try:
            loop = wait_until(done, jobs, proc)
            worker_us = postgres_us = None
            if first is not None and first[0] < jobs:
                per_job = 1e6 / (jobs - first[0])
                worker_us = (cpu_s(proc.pid) - first[1]) * per_job
                postgres_us = (postgres_cpu_s() - first[2]) * per_job
        finally:
            stop(proc)
        outcome = finished(url)
        if outcome.failed or outcome.first_started is None or outcome.last_finished is None:
            raise RuntimeError(f"the echo jobs did not all complete: {outcome}")
        seconds = outcome.last_finished - outcome.first_started
        return ChatqDrain(seconds, loop, worker_us, postgres_us)


def drain_pgqueuer(jobs: int, batch_size: int, workdir: Path) -> tuple[float, str]:
    """Seconds from the first 'picked' to the last 'successful', and the consumer's loop."""
    with database("postgres", workdir) as url, tempfile.TemporaryFile() as log:
        asyncio.run(preload_pgqueuer(url, jobs))
        argv = [sys.executable, __file__, "--pgqueuer-consumer", url, "--batch", str(batch_size)]
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            loop = wait_until(lambda: int(query(url, PGQ_DONE)[0][0]), jobs, proc)
        finally:
            stop(proc)
        return float(query(url, PGQ_DRAIN)[0][0]), loop


async def pgqueuer_consumer(url: str, batch_size: int) -> None:
    """One PgQueuer with a no-op entrypoint, in drain mode: it returns once the queue is empty."""
    from pgqueuer import AsyncpgDriver, Job, PgQueuer
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(url)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    await pgq.run(
        dequeue_timeout=timedelta(seconds=1), batch_size=batch_size, mode=QueueExecutionMode.drain
    )


def main() -> int:
    parser = arguments(__doc__, "1 run of 300 jobs: a smoke test", stores=False)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="pgqueuer's dequeue batch size")
    parser.add_argument("--concurrency", type=int, default=256, help="chatq's (its default)")
    parser.add_argument("--pgqueuer-consumer", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pgqueuer_consumer:
        # On the loop chatq's worker runs on, so that both sides run on the same one.
        event_loop.run(pgqueuer_consumer(args.pgqueuer_consumer, args.batch))
        return 0
    try:
        version = importlib.metadata.version("pgqueuer")
    except importlib.metadata.PackageNotFoundError:
        print("bench/queue_drain.py needs pgqueuer: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    runs, jobs = (1, 300) if args.quick else (args.runs, args.jobs)
    ours, theirs, loops = [], [], set()
    cpu: list[tuple[float, float]] = []  # chatq's (worker, postgres) µs per job, by run
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for _ in range(runs):
            seconds, their_loop = drain_pgqueuer(jobs, args.batch, workdir)
            theirs.append(jobs / seconds)
            drain = drain_chatq(jobs, args.concurrency, workdir)
            ours.append(jobs / drain.seconds)
            loops.add(f"pgqueuer on {their_loop}, chatq worker on {drain.loop}")
            if drain.worker_us is not None and drain.postgres_us is not None:
                cpu.append((drain.worker_us, drain.postgres_us))
    ours_rate, theirs_rate = statistics.median(ours), statistics.median(theirs)
    table("consumer (one process)", "jobs", "jobs/s")
    row(f"pgqueuer {version}, batch {args.batch}, no-op", f"{jobs:,}", f"{theirs_rate:,.0f}")
    row(f"chatq worker, concurrency {args.concurrency}, echo", f"{jobs:,}", f"{ours_rate:,.0f}")
    row("ratio chatq / pgqueuer", "", f"{ours_rate / theirs_rate:.2f}")
    print(f"\nevent loops: {'; '.join(sorted(loops))}")
    if cpu:
        worker_us = statistics.median(w for w, _ in cpu)
        postgres_us = statistics.median(p for _, p in cpu)
        print(f"chatq's CPU per job (median): worker {worker_us:.1f} µs, ", end="")
        print(f"PostgreSQL {postgres_us:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
