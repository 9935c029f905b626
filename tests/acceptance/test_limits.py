"""Limits and priority through the real server: 429 in Perplexity's error shape with
Retry-After on every create route, nothing over a cap stored, limits set per key with the
CLI, priority validated and never sent upstream, and two `chatq api` processes on one
PostgreSQL holding one rate and one cap."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from perplexity import Perplexity, UnprocessableEntityError

from chatq.client.http import ChatqClient, ServerError
from tests.acceptance.conftest import PATH, chat, wait_finished
from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, database_url, run_cli

SONAR = "/v1/async/sonar"
# No key cache: a limit changed with the CLI applies to the next request.
CONFIG = 'key_cache_s = 0\n\n[[backends]]\nname = "echo"\ntype = "echo"\nmodels = ["echo"]\n'
_names = itertools.count()


@contextmanager
def apis(dialect: str, workdir: Path, count: int = 1) -> Iterator[list[ChatqServer]]:
    """`chatq api` processes (no worker: what is submitted stays unfinished) on one fresh
    database."""
    config = workdir / "limits.toml"
    config.write_text(CONFIG)
    with database_url(dialect, workdir) as url, ExitStack() as stack:
        assert run_cli("migrate", "--database", url).returncode == 0
        servers = []
        for _ in range(count):
            server = ChatqServer(workdir, "--database", url, "--config", str(config), command="api")
            server.start()
            stack.callback(server.stop)
            servers.append(server)
        yield servers


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatqServer]:
    with apis("sqlite", tmp_path_factory.mktemp("limits")) as (server,):
        yield server


def key_with(server: ChatqServer, *options: str) -> tuple[str, str]:
    """A new key of a new owner, made with `chatq keys create NAME OPTIONS`: (name, secret)."""
    name = f"limited-{next(_names)}"
    done = run_cli("keys", "create", name, *options, "--database", server.database)
    assert done.returncode == 0, done.stderr
    return name, done.stdout.strip().splitlines()[-1]


def assert_429(response: httpx.Response, kind: str) -> int:
    """A 429 in Perplexity's error shape; its Retry-After, in whole seconds."""
    assert response.status_code == 429, response.text
    assert response.json() == {
        "error": {"message": response.json()["error"]["message"], "type": kind, "code": 429}
    }
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    return int(retry_after)


def listed(client: httpx.Client) -> int:
    return len(client.get(PATH, params={"limit": 1000}).json()["requests"])


def test_over_the_cap_every_create_route_gets_429_and_nothing_is_stored(
    api: ChatqServer,
) -> None:
    _, secret = key_with(api, "--max-unfinished", "2")
    with api.client(secret) as client:
        for _ in range(2):
            assert client.post(PATH, json=chat()).status_code == 200
        for path in (PATH, SONAR):
            response = client.post(path, json=chat())
            assert assert_429(response, "too_many_unfinished_requests") == 1
            assert "2" in response.json()["error"]["message"]
        flat = {"model": "echo", "messages": [{"role": "user", "content": "flat"}]}
        assert_429(client.post(PATH, json=flat), "too_many_unfinished_requests")
        for sync in ("/chat/completions", "/v1/chat/completions"):
            assert_429(client.post(sync, json=flat), "too_many_unfinished_requests")
        assert listed(client) == 2


def test_over_the_rate_429_says_when_to_retry(api: ChatqServer) -> None:
    _, secret = key_with(api, "--rpm", "3")  # a burst of 3, then one every 20 s
    with api.client(secret) as client:
        for _ in range(3):
            assert client.post(PATH, json=chat()).status_code == 200
        retry_after = assert_429(client.post(PATH, json=chat()), "rate_limited")
        assert 15 <= retry_after <= 20
        assert_429(client.post("/v1/chat/completions", json=chat()["request"]), "rate_limited")
        assert listed(client) == 3


async def test_the_client_reads_when_a_limited_batch_may_be_retried(api: ChatqServer) -> None:
    """`chatq batch run` waits as long as the server's Retry-After says (tests/unit)."""
    _, secret = key_with(api, "--rpm", "2")  # a burst of 2, then one every 30 s
    async with ChatqClient(api.base_url, secret) as client:
        assert "id" in (await client.submit_batch([chat(), chat()]))[1]
        with pytest.raises(ServerError) as refused:
            await client.submit_batch([chat()])
    assert (refused.value.status, refused.value.kind) == (429, "rate_limited")
    assert refused.value.retry_after is not None and 25 <= refused.value.retry_after <= 30


def test_keys_update_sets_and_clears_a_keys_limits(api: ChatqServer) -> None:
    name, secret = key_with(api)
    database = ("--database", api.database)
    with api.client(secret) as client:
        assert client.post(PATH, json=chat()).status_code == 200
        done = run_cli("keys", "update", name, "--max-unfinished", "1", *database)
        assert done.returncode == 0 and "max_unfinished 1" in done.stdout, done.stderr
        assert "max_unfinished=1" in run_cli("keys", "list", *database).stdout
        assert_429(client.post(PATH, json=chat()), "too_many_unfinished_requests")
        done = run_cli("keys", "update", name, "--max-unfinished", "default", *database)
        assert done.returncode == 0, done.stderr
        assert client.post(PATH, json=chat()).status_code == 200, "the default: no limit"
    bad = run_cli("keys", "update", name, "--rpm", "-1", *database)
    assert bad.returncode == 2 and "--rpm" in bad.stderr
    nothing = run_cli("keys", "update", name, *database)
    assert nothing.returncode == 2 and "say what to change" in nothing.stderr


@pytest.mark.parametrize(
    "priority", [1001, -1001, 2.5, "high", True, None], ids=lambda p: f"priority={p!r}"
)
def test_priority_out_of_range_or_not_an_integer_is_a_422(api: ChatqServer, priority: Any) -> None:
    _, secret = key_with(api)
    with api.client(secret) as client:
        for body in (
            {**chat(), "priority": priority},
            {**chat()["request"], "priority": priority},  # the flat body
        ):
            response = client.post(PATH, json=body)
            assert response.status_code == 422, response.text
            (error,) = response.json()["detail"]
            assert error["loc"] == ["body", "priority"], error


def test_priority_through_the_sdk(api: ChatqServer) -> None:
    _, secret = key_with(api)
    sdk = Perplexity(api_key=secret, base_url=api.base_url, max_retries=0)
    try:
        created = sdk.async_.chat.completions.create(
            request={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
            extra_body={"priority": 1000},
        )
        assert created.status == "CREATED"
        with pytest.raises(UnprocessableEntityError):
            sdk.async_.chat.completions.create(
                request={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                extra_body={"priority": 1001},
            )
    finally:
        sdk.close()


def test_a_flat_bodys_priority_is_chatqs_and_not_sent_upstream(
    server: ChatqServer, module_upstream: FakeUpstream
) -> None:
    name = f"flat-priority-{next(_names)}"
    done = run_cli("keys", "create", name, "--database", server.database)
    secret = done.stdout.strip().splitlines()[-1]
    content = f"prioritised {time.monotonic_ns()}"
    flat = {"model": "fake-model", "messages": [{"role": "user", "content": content}]}
    with server.client(secret) as client:
        created = client.post(PATH, json={**flat, "priority": 7})
        assert created.status_code == 200, created.text
        assert wait_finished(client, created.json()["id"])["status"] == "COMPLETED"
    (call,) = [c for c in module_upstream.calls if c["messages"][0]["content"] == content]
    assert "priority" not in call


def test_two_api_processes_hold_one_rate_and_one_cap(tmp_path: Path) -> None:
    """Clients hammer two `chatq api` processes on one PostgreSQL with one key. Rate: once
    the burst is spent, the 200s counted over WINDOW_S come at the set rate, within 10%
    (with a limiter per process they would come at twice it). Cap: exactly the cap stored."""
    rpm, window_s = 600, 15.0  # 10 a second, after a burst of 600
    with apis("postgres", tmp_path, count=2) as servers:
        _, secret = key_with(servers[0], "--rpm", str(rpm))
        outcomes = hammer(servers, secret, seconds=window_s + 1.5, after_refusal=True)
        first_refusal = min(t for t, status in outcomes if status == 429)
        start = first_refusal + 1.0  # clear of the burst's last moments
        assert start + window_s <= max(t for t, _ in outcomes), "the burst took too long"
        in_window = [t for t, status in outcomes if status == 200 and start <= t < start + window_s]
        rate = len(in_window) / window_s
        print(f"\n{rate:.1f} requests/s let in by 2 processes, set to {rpm / 60:g}/s")
        assert rate == pytest.approx(rpm / 60, rel=0.10)
        assert {status for _, status in outcomes} == {200, 429}

        _, capped = key_with(servers[0], "--max-unfinished", "30")
        outcomes = hammer(servers, capped, seconds=3)
        assert sum(status == 200 for _, status in outcomes) == 30
        with servers[1].client(capped) as client:
            assert listed(client) == 30


def hammer(
    servers: list[ChatqServer], secret: str, seconds: float, after_refusal: bool = False
) -> list[tuple[float, int]]:
    """Create requests from 8 threads across the servers, each thread at most every 20 ms,
    for seconds (after_refusal: for seconds after the first 429, at most a minute in all);
    (monotonic time of the answer, status) of each."""
    deadline = [time.monotonic() + (60.0 if after_refusal else seconds)]
    outcomes: list[tuple[float, int]] = []
    lock = threading.Lock()

    def client_loop(n: int) -> None:
        with servers[n % len(servers)].client(secret) as client:
            while (now := time.monotonic()) < deadline[0]:
                status = client.post(PATH, json=chat()).status_code
                with lock:
                    answered = time.monotonic()
                    if after_refusal and status == 429 and not any(s == 429 for _, s in outcomes):
                        deadline[0] = answered + seconds
                    outcomes.append((answered, status))
                time.sleep(max(0.0, now + 0.02 - time.monotonic()))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client_loop, range(8)))
    return outcomes
