"""What the benchmarks share: processes, databases, wrk and tables.

Each script in bench/ imports from here (bench/ is on sys.path when one of them runs).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx

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


@contextmanager
def process(*argv: str, ready: str) -> Iterator[str]:
    """Run argv until the block ends (stopped by its own pid), once the URL ready answers;
    yield ready's base URL."""
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
            yield ready.rsplit("/", 1)[0]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def script_server(script: str, *args: str, ready: str = "/healthz") -> AbstractContextManager[str]:
    """`python bench/SCRIPT PORT ARGS...` on a free port, once its ready path answers; its
    base URL."""
    port = free_port()
    argv = (sys.executable, str(HERE / script), str(port), *args)
    return process(*argv, ready=f"http://127.0.0.1:{port}{ready}")


def chatq(*args: str) -> str:
    """Run a chatq command to its end; the last line it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "chatq", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def chatq_server(command: str, url: str) -> AbstractContextManager[str]:
    """`chatq serve` or `chatq api` on a free port, once /healthz answers; its base URL."""
    port = free_port()
    argv = (sys.executable, "-m", "chatq", command, "--database", url, "--port", str(port))
    return process(*argv, ready=f"http://127.0.0.1:{port}/healthz")


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


def wrk(
    url: str,
    script: str,
    *,
    seconds: int,
    threads: int,
    connections: int,
    env: Mapping[str, str],
    fail_on: Sequence[str] = ("Non-2xx",),
) -> tuple[float, float]:
    """(requests/s, p99 ms) of a wrk run with bench/SCRIPT; an error if wrk's report says
    any of fail_on."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
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
