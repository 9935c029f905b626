"""Long jobs: thousands of calls held open at once, each answered by the upstream after 2 s.

Two scenarios by default: 20,000 requests with 10,000 in flight, and 5,000 with 1,000. For
each store, the requests are all submitted first (the store's own submit verb, before any
worker runs), then one `chatq worker` starts with `[worker] concurrency` and the backend's
`max_concurrency` both at the in-flight figure, against nginx with its echo module
(bench/nginx_upstream.py), which holds a waiting call for next to nothing: a Python upstream
was the bottleneck at 10,000 in flight. The bench raises its open-files soft limit to the
hard limit (the worker and nginx inherit it) and prints both.

The clock starts when the worker prints `chatq worker ID ready` (its process is up, the
store is open and migrated, the backend's client is built; the next thing it does is claim)
and stops at the last completed_at the store recorded (the worker's own clock, so polling
granularity does not count; the bench polls one count query every 0.25 s). The ideal is
requests / in-flight x delay; the ratio is ideal / wall. Python's start-up and imports
before the ready line are not on the clock; they are shown apart, as start-up. Peak RSS is
VmHWM from /proc/PID/status of the worker process and CPU its utime + stime (start-up
included), both read once the last job is COMPLETED; CPU per job is that CPU / requests.
The upstream's peak in flight is nginx's count of calls being answered, sampled at each
poll.

The baseline, measured in the same run and interleaved with the stores run by run: the same
calls through chatq's OpenAI backend alone (its client and connection pools, no store, no
worker), in the bench's own process on the same event loop as the worker, from the first
call to the last answer. "/ backend" is the backend alone's wall / the worker's.

    apt-get install nginx-light libnginx-mod-http-echo
    python bench/long_jobs.py         # about 5 minutes; --quick for a smoke run
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from common import (
    arguments,
    chatq_worker,
    cpu_s,
    database,
    event_loop_of,
    finished,
    preload,
    row,
    rss_mb,
    table,
    upstream_config,
)
from nginx_upstream import in_flight, missing, nginx_upstream

from chatq import event_loop
from chatq.backends.openai import OpenAIBackend
from chatq.config import BackendConfig

MODEL = "slow"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Take your time."}]}


@dataclass(frozen=True)
class Scenario:
    requests: int
    in_flight: int
    delay_s: float

    @property
    def ideal_s(self) -> float:
        return self.requests / self.in_flight * self.delay_s


def parse_scenario(given: str, delay_s: float) -> Scenario:
    """A --scenarios entry, REQUESTSxIN_FLIGHT."""
    requests, in_flight = given.split("x")
    return Scenario(int(requests), int(in_flight), delay_s)


@dataclass(frozen=True)
class Sample:
    wall_s: float
    startup_s: float
    peak_rss_mb: float
    cpu_s: float
    upstream_peak: int
    failed: int
    loop: str


async def backend_alone(base_url: str, scenario: Scenario) -> float:
    """Seconds for the same calls through chatq's OpenAI backend alone: no store, no worker."""
    config = BackendConfig(
        name="slow",
        type="openai",
        models=(MODEL,),
        base_url=f"{base_url}/v1",
        max_concurrency=scenario.in_flight,
        timeout_s=120,
    )
    backend = OpenAIBackend(config)
    slots = asyncio.Semaphore(scenario.in_flight)

    async def one(i: int) -> None:
        async with slots:
            await backend.run(str(i), BODY)

    started = time.time()
    try:
        await asyncio.gather(*(one(i) for i in range(scenario.requests)))
        return time.time() - started
    finally:
        await backend.aclose()


def run_once(store: str, scenario: Scenario) -> Sample:
    """One timed drain by `chatq worker` on a fresh database."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        url = stack.enter_context(database(store, workdir))
        upstream = stack.enter_context(nginx_upstream(scenario.delay_s)).url
        config = upstream_config(workdir / "chatq.toml", upstream, MODEL, scenario.in_flight)
        preload(url, [BODY] * scenario.requests)  # the store's own submit verb, 100 at a time
        log = workdir / "worker.log"
        proc, startup_s = stack.enter_context(chatq_worker(url, log, "--config", str(config)))
        started = time.time()
        deadline = time.monotonic() + 20 * scenario.ideal_s + 60
        peak = 0
        while (done := finished(url)).count < scenario.requests:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"{done.count}/{scenario.requests} finished; log:\n{tail}")
            peak = max(peak, in_flight(upstream))
            time.sleep(0.25)
        rss, cpu = rss_mb(proc.pid, "VmHWM"), cpu_s(proc.pid)
        assert done.last_finished is not None
        wall_s = done.last_finished - started
        return Sample(wall_s, startup_s, rss, cpu, peak, done.failed, event_loop_of(proc.pid))


def baseline_once(scenario: Scenario) -> float:
    """The same calls through the backend alone, in this process, on a fresh upstream."""
    with nginx_upstream(scenario.delay_s) as upstream:
        return event_loop.run(backend_alone(upstream.url, scenario))


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def open_files_limit() -> str:
    """Raise this process's open-files soft limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return f"open files: soft limit {soft:,} raised to the hard limit {hard:,}"


def main() -> int:
    parser = arguments(__doc__, "1 run of 200 requests x 0.5 s, 100 in flight")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["20000x10000", "5000x1000"],
        metavar="REQUESTSxIN_FLIGHT",
        help="the drains to run (default: 20000x10000 5000x1000)",
    )
    parser.add_argument("--delay", type=float, default=2.0, help="upstream answer time, s")
    args = parser.parse_args()
    if (install := missing()) is not None:
        print(f"bench/long_jobs.py needs nginx with its echo module: {install}", file=sys.stderr)
        return 2
    if args.quick:
        runs, scenarios = 1, [Scenario(200, 100, 0.5)]
    else:
        runs = args.runs
        scenarios = [parse_scenario(given, args.delay) for given in args.scenarios]
    print(open_files_limit())
    table(
        "run",
        "requests",
        "in flight",
        "delay s",
        "ideal s",
        "wall s",
        "ideal / wall",
        "/ backend",
        "worker peak RSS MB",
        "worker CPU s",
        "CPU ms per job",
        "upstream peak in flight",
        "failed",
        "worker start-up s",
    )
    loops: set[str] = set()
    for scenario in scenarios:
        samples: dict[str, list[Sample]] = {store: [] for store in args.stores}
        alone: list[float] = []
        for _ in range(runs):  # interleaved, so that drift falls on every side alike
            for store in args.stores:
                samples[store].append(run_once(store, scenario))
            alone.append(baseline_once(scenario))
        alone_s = statistics.median(alone)
        head = (
            f"{scenario.requests:,} | {scenario.in_flight:,} | {scenario.delay_s:g} | "
            f"{scenario.ideal_s:.1f}"
        )
        for store, taken in samples.items():
            wall = statistics.median(s.wall_s for s in taken)
            cpu = statistics.median(s.cpu_s for s in taken)
            loops.update(s.loop for s in taken)
            row(
                store,
                head,
                f"{wall:.2f} ({spread([s.wall_s for s in taken])})",
                f"{scenario.ideal_s / wall:.2f}",
                f"{alone_s / wall:.2f}",
                f"{statistics.median(s.peak_rss_mb for s in taken):.0f}",
                f"{cpu:.1f}",
                f"{cpu / scenario.requests * 1000:.2f}",
                f"{statistics.median(s.upstream_peak for s in taken):,.0f}",
                max(s.failed for s in taken),
                f"{statistics.median(s.startup_s for s in taken):.2f}",
            )
        row(
            "backend alone",
            head,
            f"{alone_s:.2f} ({spread(alone)})",
            f"{scenario.ideal_s / alone_s:.2f}",
            *["-"] * 7,
        )
    print(f"\nworker event loop: {', '.join(sorted(loops))}; backend alone: {event_loop.name()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
