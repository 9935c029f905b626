"""One real `chatq serve` per module, routing models to a fake upstream, on a real SQLite file."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, create_key, database_url
from tests.pg import temporary_database_sync
from tests.waiting import eventually

_names = itertools.count()
PATH = "/async/chat/completions"
UPSTREAM_KEY = "sk-fake-upstream"
MAX_REQUEST_BYTES = 65536
KEY_CACHE_S = 1.0

WORKER_DEFAULTS = {
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    "max_attempts": 3,
    "poll_interval_s": 0.2,
}
BACKENDS: list[dict[str, object]] = [
    {
        "name": "fake",
        "type": "openai",
        "api_key_env": "FAKE_UPSTREAM_KEY",
        "models": ["fake-model", "sonar*"],
        "upstream_model": "upstream-llama",
        "timeout_s": 10,
    },
    {"name": "echo", "type": "echo", "models": ["echo"]},
    {"name": "smollm2", "type": "local", "models": ["smollm2"], "max_concurrency": 2},
]


def write_config(
    path: Path,
    upstream_url: str,
    webhooks: dict[str, object] | None = None,
    prices: Mapping[str, object] | None = None,
    **worker: float,
) -> Path:
    """A config routing fake-model and sonar* to the fake upstream (at prices, if given),
    echo to echo, smollm2 to the local model; WORKER_DEFAULTS, and the worker settings
    given, in its [worker]; the webhooks settings given in its [webhooks]."""
    upstream: dict[str, object] = {**BACKENDS[0], "base_url": upstream_url}
    if prices:
        upstream["prices"] = prices
    top: dict[str, object] = {"max_request_bytes": MAX_REQUEST_BYTES, "key_cache_s": KEY_CACHE_S}
    tables: list[tuple[str, dict[str, object]]] = [
        ("", top),
        ("[worker]", {**WORKER_DEFAULTS, **worker}),
        ("[webhooks]", webhooks or {}),
        ("[[backends]]", upstream),
        *(("[[backends]]", backend) for backend in BACKENDS[1:]),
    ]
    path.write_text(
        "\n\n".join(
            "\n".join([header, *(f"{k} = {_toml(v)}" for k, v in values.items())]).strip()
            for header, values in tables
        )
    )
    return path


def _toml(value: object) -> str:
    """A TOML value: JSON's strings, numbers and arrays of them are TOML's too; a table is
    written inline."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@pytest.fixture(scope="module")
def module_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_upstream: FakeUpstream,
) -> Iterator[ChatqServer]:
    """`chatq serve` on each dialect in turn: the contract is the same on both."""
    workdir = tmp_path_factory.mktemp("chatq")
    config = write_config(workdir / "chatq.toml", module_upstream.base_url)
    with serving(request.param, workdir, config) as proc:
        yield proc


@contextmanager
def serving(dialect: str, workdir: Path, config: Path, *args: str) -> Iterator[ChatqServer]:
    """`chatq serve` on a fresh database of dialect with config (and any further args), until
    the block ends; it must then stop cleanly."""
    with database_url(dialect, workdir) as url:
        proc = ChatqServer(
            workdir,
            "--database",
            url,
            "--config",
            str(config),
            *args,
            env={"FAKE_UPSTREAM_KEY": UPSTREAM_KEY},
        )
        proc.start()
        try:
            yield proc
        finally:
            code = proc.stop()
            assert code in (0, -15), f"chatq exited with {code}; log:\n{proc.log()}"


@contextmanager
def serving_apart(workdir: Path, config: Path, *args: str) -> Iterator[ChatqServer]:
    """`chatq api` and `chatq worker` on a fresh PostgreSQL database with config (and any
    further args for the API), until the block ends: the API process is yielded; both must
    then stop cleanly."""
    with temporary_database_sync() as url:
        common = ("--database", url, "--config", str(config))
        env = {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
        api = ChatqServer(workdir, *common, *args, command="api", env=env).start()
        try:
            worker = ChatqServer(workdir, *common, command="worker", env=env).start()
            try:
                yield api
            finally:
                code = worker.stop()
                assert code in (0, -15), f"chatq worker exited with {code}:\n{worker.log()}"
        finally:
            code = api.stop()
            assert code in (0, -15), f"chatq api exited with {code}; log:\n{api.log()}"


def deployed(
    deployment: str, workdir: Path, config: Path, *args: str
) -> AbstractContextManager[ChatqServer]:
    """The server of a deployment, until the block ends: "sqlite" is `chatq serve` on SQLite,
    "postgres" is `chatq api` and `chatq worker` on PostgreSQL (the API process is yielded)."""
    if deployment == "sqlite":
        return serving("sqlite", workdir, config, *args)
    return serving_apart(workdir, config, *args)


@pytest.fixture
def new_key(server: ChatqServer) -> Callable[[], str]:
    """Keys for fresh owners: each test sees only the requests it made itself."""
    return lambda: create_key(server.database, f"owner-{next(_names)}-{time.monotonic_ns()}")


def chat(content: str = "hi", model: str = "echo", **extra: Any) -> dict[str, Any]:
    """A create body: one user message for the model, and any extra request fields."""
    return {
        "request": {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    }


def wait_finished(client: httpx.Client, request_id: str, timeout: float = 20) -> dict[str, Any]:
    """The request's full object, once it is COMPLETED or FAILED."""

    def get() -> dict[str, Any]:
        body: dict[str, Any] = client.get(f"{PATH}/{request_id}").json()
        return body

    return eventually(
        get,
        lambda body: body["status"] in ("COMPLETED", "FAILED"),
        what=f"request {request_id} to finish",
        timeout=timeout,
    )


def wait_started(client: httpx.Client, request_id: str, timeout: float = 20) -> None:
    """Until a worker has the request IN_PROGRESS."""
    eventually(
        lambda: client.get(f"{PATH}/{request_id}").json()["status"],
        lambda status: status == "IN_PROGRESS",
        what=f"request {request_id} to start",
        timeout=timeout,
    )


def pages(client: httpx.Client, limit: int, *, most: int) -> Iterator[dict[str, Any]]:
    """Each page of the list, following next_token until it is null; at most `most` pages,
    so that a walk that never ends fails instead of hanging."""
    token: str | None = None
    for _ in range(most):
        params: dict[str, str | int] = {"limit": limit}
        if token is not None:
            params["next_token"] = token
        response = client.get(PATH, params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        yield page
        token = page["next_token"]
        if token is None:
            return
