"""The server processes run on uvloop and parse HTTP with httptools (both declared
dependencies), and say so when they start; requests go through on that stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import (
    PATH,
    chat,
    deployed,
    wait_finished,
    write_config,
)
from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, create_key


def _loaded(pid: int) -> set[str]:
    """Which of the two C extensions a live process has mapped into its memory."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in ("uvloop", "httptools") if f"/{name}/" in maps}


@pytest.fixture(params=["sqlite", "postgres"])
def process(
    request: pytest.FixtureRequest, tmp_path: Path, module_upstream: FakeUpstream
) -> Iterator[ChatqServer]:
    """`chatq serve` on SQLite, or `chatq api` (beside a worker) on PostgreSQL."""
    config = write_config(tmp_path / "chatq.toml", module_upstream.base_url)
    with deployed(request.param, tmp_path, config) as server:
        yield server


def test_the_server_runs_on_uvloop_and_httptools(process: ChatqServer) -> None:
    key = create_key(process.database, "event-loop")
    with process.client(key) as client:
        created = client.post(PATH, json=chat("which loop?", model="fake-model"))
        assert created.status_code == 200, created.text
        assert wait_finished(client, created.json()["id"])["status"] == "COMPLETED"
    assert process.proc is not None
    assert _loaded(process.proc.pid) == {"uvloop", "httptools"}
    assert "uvloop loop" in process.log()
