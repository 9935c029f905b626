"""Process-level faults: real chatq processes, killed and signalled by pid."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import PATH, write_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, create_key, database_url, run_cli
from tests.waiting import eventually

ENV = {"FAKE_UPSTREAM_KEY": "k"}


class Deployment:
    """A database, a config routing fake-model to the fake upstream, a key, and processes."""

    def __init__(self, workdir: Path, url: str, config: Path) -> None:
        self.workdir = workdir
        self.url = url
        self.config = config
        assert run_cli("migrate", "--database", url).returncode == 0
        self.key = create_key(url, "faults")
        self.processes: list[ChatqServer] = []

    def start(self, command: str) -> ChatqServer:
        process = ChatqServer(
            self.workdir,
            "--database",
            self.url,
            "--config",
            str(self.config),
            command=command,
            env=ENV,
        )
        self.processes.append(process)
        return process.start()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.proc is not None and process.proc.poll() is None:
                process.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeUpstream
) -> Iterator[Deployment]:
    # Short leases: a dead worker's jobs are rescued within about a second.
    config = write_config(tmp_path / "chatq.toml", upstream.base_url, lease_s=1.0, grace_s=1.0)
    with database_url(request.param, tmp_path) as url:
        deployed = Deployment(tmp_path, url, config)
        try:
            yield deployed
        finally:
            deployed.stop_all()


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
