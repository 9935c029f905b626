"""Process-level faults: real chatq processes, killed and signalled by pid."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatq.keys import create_key
from chatq.store import open_store
from tests.acceptance.conftest import PATH, write_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, database_url
from tests.waiting import eventually

ENV = {"FAKE_UPSTREAM_KEY": "k"}


class Deployment:
    """A database, a config routing fake-model to the fake upstream, a key, and processes."""

    def __init__(self, workdir: Path, url: str, config: Path) -> None:
        self.workdir = workdir
        self.url = url
        self.config = config
        # What `chatq migrate` and `chatq keys create` do (tests/acceptance/test_cli.py runs
        # them), in this process: two interpreter starts fewer for every test.
        self.key = asyncio.run(_migrate_and_create_key(url, "faults"))
        self.processes: list[ChatqServer] = []
        self.env = dict(ENV)  # the environment of the processes started from now on

    def new_key(self, owner: str) -> str:
        """A key for another owner."""
        return asyncio.run(_migrate_and_create_key(self.url, owner))

    def start(self, command: str, *args: str) -> ChatqServer:
        (process,) = self.start_together([command, *args])
        return process

    def start_together(self, *commands: list[str]) -> list[ChatqServer]:
        """Start processes (each a command and its extra arguments) at once and wait until
        every one is ready: each spends a second or two importing before it is."""
        processes = [
            ChatqServer(
                self.workdir,
                "--database",
                self.url,
                "--config",
                str(self.config),
                *args,
                command=command,
                env=self.env,
            )
            for command, *args in commands
        ]
        self.processes.extend(processes)
        with ThreadPoolExecutor(len(processes)) as starting:
            list(starting.map(ChatqServer.start, processes))
        return processes

    def stop_all(self) -> None:
        for process in self.processes:
            if process.proc is not None and process.proc.poll() is None:
                process.stop()


async def _migrate_and_create_key(url: str, name: str) -> str:
    store = await open_store(url, pool_size=1)
    try:
        await store.migrate()
        _, secret = await create_key(store, name)
    finally:
        await store.close()
    return secret


@contextmanager
def deployed(dialect: str, workdir: Path, upstream: FakeUpstream) -> Iterator[Deployment]:
    """A Deployment on a new database of the dialect; its processes stopped at the end."""
    # Short leases: a dead worker's jobs are rescued within about a second.
    config = write_config(workdir / "chatq.toml", upstream.base_url, lease_s=1.0, grace_s=1.0)
    with database_url(dialect, workdir) as url:
        deployment = Deployment(workdir, url, config)
        try:
            yield deployment
        finally:
            deployment.stop_all()


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeUpstream
) -> Iterator[Deployment]:
    with deployed(request.param, tmp_path, upstream) as deployment:
        yield deployment


@pytest.fixture
def pg_deployment(tmp_path: Path, upstream: FakeUpstream) -> Iterator[Deployment]:
    """A Deployment on PostgreSQL only: for what LISTEN/NOTIFY or many hosts are about."""
    with deployed("postgres", tmp_path, upstream) as deployment:
        yield deployment


def statuses(client: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {i: client.get(f"{PATH}/{i}").json() for i in ids}


def all_completed(
    client: httpx.Client, ids: list[str], what: str, timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """The requests' full objects, once every one of them is COMPLETED."""
    return eventually(
        lambda: statuses(client, ids),
        lambda got: all(state["status"] == "COMPLETED" for state in got.values()),
        what=what,
        timeout=timeout,
        show=lambda got: Counter(state["status"] for state in got.values()),
    )
