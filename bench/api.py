"""HTTP benchmarks: chatq's API against a bare FastAPI ceiling, measured in the same run.

For each store (SQLite, PostgreSQL), `chatq api` and bench/ceiling.py run on the same
uvicorn settings; wrk drives each with 64 connections: submit (POST), get-one, list with
limit 20 and 100. Each figure is the median of --runs runs; the ratio is chatq / ceiling.

    apt-get install wrk        # the load generator
    python bench/api.py       # about 4 minutes; --quick for a smoke run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import httpx

HERE = Path(__file__).parent
PATH = "/async/chat/completions"
CHAT = {
    "request": {"model": "echo", "messages": [{"role": "user", "content": "How fast is chatq?"}]}
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process(*argv: str, ready: str) -> Iterator[str]:
    """Run argv until the block ends (stopped by its own pid), once the URL ready answers."""
    with tempfile.TemporaryFile() as log:
        yield from _serve(argv, ready, log)


def _serve(argv: tuple[str, ...], ready: str, log: IO[bytes]) -> Iterator[str]:
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
        yield ready.rsplit("/", 1)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def chatq(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "chatq", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def wrk(url: str, script: str, seconds: int, key: str) -> tuple[float, float]:
    """(requests/s, p99 ms) for 64 connections on 2 threads."""
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", str(HERE / script), url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KEY": key},
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"errors during the run:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rate, p99


@contextmanager
def database(store: str, workdir: Path) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    admin = os.environ.get("CHATQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"chatq_bench_{os.getpid()}"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE {name} WITH (FORCE)"], check=True)


SCENARIOS = [
    ("submit", "submit.lua", ""),
    ("get one", "get.lua", "/{id}"),
    ("list 20", "get.lua", "?limit=20"),
    ("list 100", "get.lua", "?limit=100"),
]


def run_once(store: str, seconds: int) -> dict[str, tuple[float, float, float, float]]:
    """scenario -> (chatq req/s, chatq p99, ceiling req/s, ceiling p99)."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url = stack.enter_context(database(store, Path(tmp)))
        chatq("migrate", "--database", url)
        key = chatq("keys", "create", "bench", "--database", url)
        port, ceiling_port = free_port(), free_port()
        base = stack.enter_context(
            process(
                sys.executable,
                "-m",
                "chatq",
                "api",
                "--database",
                url,
                "--port",
                str(port),
                ready=f"http://127.0.0.1:{port}/healthz",
            )
        )
        ceiling = stack.enter_context(
            process(
                sys.executable,
                str(HERE / "ceiling.py"),
                str(ceiling_port),
                ready=f"http://127.0.0.1:{ceiling_port}/docs",
            )
        )
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(100):  # rows for the lists to return
                request_id = client.post(base + PATH, json=CHAT).json()["id"]
        for name, script, suffix in SCENARIOS:
            tail = suffix.format(id=request_id)
            ours = wrk(base + PATH + tail, script, seconds, key)
            bare = wrk(ceiling + PATH + tail, script, seconds, key)
            results[name] = (*ours, *bare)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s each: a smoke test")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/api.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    runs, seconds = (1, 1) if args.quick else (args.runs, args.seconds)
    print(
        "| store | scenario | chatq req/s | chatq p99 ms | ceiling req/s | ceiling p99 ms | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for store in args.stores:
        samples = [run_once(store, seconds) for _ in range(runs)]
        for name, _, _ in SCENARIOS:
            ours, ours_p99, bare, bare_p99 = (
                statistics.median(s[name][i] for s in samples) for i in range(4)
            )
            print(
                f"| {store} | {name} | {ours:,.0f} | {ours_p99:.1f} | {bare:,.0f} | "
                f"{bare_p99:.1f} | {ours / bare:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
