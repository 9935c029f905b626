"""Webhook deliveries under faults, with real chatq processes and a real receiver on
127.0.0.1, on SQLite and PostgreSQL: a flaky receiver that is down for 20 s while a worker
is killed with SIGKILL, a process killed between the terminal commit and the delivery, and
a receiver that hangs while other owners' deliveries go on.

The first test runs issue 13's 2,000 requests: about 50 s a dialect on 2 cores, 20 s of it
the outage."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from chatq.domain import delivery_id
from tests.acceptance.conftest import PATH, chat, write_config
from tests.fakes.receiver import Receiver, receiving
from tests.fakes.upstream import FakeUpstream
from tests.faults.conftest import Deployment
from tests.harness import database_url, run_cli
from tests.waiting import eventually

REQUESTS = 2000
DOWN_S = 20.0
WEBHOOKS: dict[str, object] = {
    "backoff_base_s": 0.2,
    "backoff_max_s": 2.0,
    "poll_interval_s": 0.5,
    "timeout_s": 2.0,  # so a dead worker's claims come due again within 9 s
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


@contextmanager
def deployed(
    dialect: str, workdir: Path, upstream: FakeUpstream, **webhooks: object
) -> Iterator[Deployment]:
    """A Deployment whose processes may deliver to 127.0.0.1 (said by the environment twin
    of [webhooks] allow_private_networks) and retry deliveries within seconds."""
    config = write_config(
        workdir / "chatq.toml",
        upstream.base_url,
        {**WEBHOOKS, **webhooks},
        lease_s=1.0,
        grace_s=1.0,
    )
    with database_url(dialect, workdir) as url:
        deployment = Deployment(workdir, url, config)
        deployment.env["CHATQ_WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "true"
        try:
            yield deployment
        finally:
            deployment.stop_all()


@pytest.fixture(params=["sqlite", "postgres"])
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def hooked(dialect: str, tmp_path: Path, upstream: FakeUpstream) -> Iterator[Deployment]:
    with deployed(dialect, tmp_path, upstream) as deployment:
        yield deployment


def submit_all(client: httpx.Client, url: str, contents: list[str]) -> list[str]:
    ids = []
    for content in contents:
        response = client.post(PATH, json={**chat(content), "webhook_url": url})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def delivered_ids(receiver: Receiver, path: str) -> Counter[str]:
    """How many times each request's event was answered with a 2xx at path."""
    return Counter(p.event["data"]["id"] for p in receiver.to(path) if 200 <= p.status < 300)


def test_a_flaky_receiver_a_20s_outage_and_a_killed_worker_lose_no_event(
    hooked: Deployment, receiver: Receiver
) -> None:
    path = "/flaky"
    receiver.flaky(path, 0.3)
    # Answers take a moment, so the kill finds attempts that the receiver has answered and
    # the worker has not recorded: those are delivered again (counted as duplicates).
    receiver.slow(path, 0.05)
    api, doomed, _survivor = hooked.start_together(["api"], ["worker"], ["worker"])
    with api.client(hooked.key) as client:
        first = submit_all(client, receiver.url(path), [f"a{i}" for i in range(REQUESTS // 2)])
        eventually(
            lambda: len(delivered_ids(receiver, path)),
            lambda n: n >= REQUESTS // 6,
            what="a third of the first half delivered",
            timeout=60,
        )
        doomed.stop(signal.SIGKILL)
        receiver.down()
        # While the receiver is down: the rest of the first half, and all of the second,
        # finish and are tried, and refused.
        second = submit_all(client, receiver.url(path), [f"b{i}" for i in range(REQUESTS // 2)])
        time.sleep(DOWN_S)  # the outage itself; nothing is measured by it
        receiver.up()
        ids = first + second
        got = eventually(
            lambda: delivered_ids(receiver, path),
            lambda counted: set(counted) >= set(ids),
            what=f"every one of {len(ids)} events delivered",
            timeout=90,
            show=len,
        )
    assert set(got) == set(ids), "zero lost, none invented"
    posts = receiver.to(path)
    secret = run_cli("webhooks", "secret", "faults", "--database", hooked.url)
    assert secret.returncode == 0, secret.stderr
    verifier = Webhook(secret.stdout.strip().splitlines()[-1])
    for post in posts:
        verifier.verify(post.body, post.headers)
        assert post.webhook_id == delivery_id(post.event["data"]["id"])
    duplicates = sum(got.values()) - len(ids)
    refused_or_500 = len(posts) - sum(got.values())
    print(
        f"\n{len(ids)} events, receiver 30% 500s and down {DOWN_S:g}s, a worker SIGKILLed: "
        f"0 lost, {duplicates} duplicate deliveries, {refused_or_500} POSTs answered 500 "
        f"(refused connections are not counted)"
    )


def test_a_process_killed_between_the_commit_and_the_delivery_still_delivers(
    dialect: str, tmp_path: Path, upstream: FakeUpstream, receiver: Receiver
) -> None:
    path = "/held"
    receiver.hang(path, 120)  # holds the first attempt while the process dies
    # The attempt cannot time out before the kill; its claim ends 2 x 5 + 5 s after it began.
    with deployed(dialect, tmp_path, upstream, timeout_s=5.0) as hooked:
        server = hooked.start("serve")
        with server.client(hooked.key) as client:
            (request_id,) = submit_all(client, receiver.url(path), ["killed before recording"])
            eventually(lambda: receiver.hanging, lambda n: n == 1, what="the attempt", timeout=30)
            finished = client.get(f"{PATH}/{request_id}").json()
        assert finished["status"] == "COMPLETED", "the terminal transition is committed"
        server.stop(signal.SIGKILL)
        receiver.release()  # from now on the receiver answers at once
        hooked.start("worker")
        got = eventually(
            lambda: delivered_ids(receiver, path),
            lambda counted: request_id in counted,
            what="the event delivered by the next worker, once the dead one's claim expired",
            timeout=60,
        )
    assert got[request_id] == 1
    attempts = receiver.to(path)
    assert len(attempts) == 2 and {p.webhook_id for p in attempts} == {delivery_id(request_id)}


def test_a_hanging_receiver_does_not_hold_up_other_owners(
    dialect: str, tmp_path: Path, upstream: FakeUpstream, receiver: Receiver
) -> None:
    receiver.hang("/hangs", 120)
    # No attempt times out during the test: what is held stays held.
    with deployed(dialect, tmp_path, upstream, timeout_s=60.0) as hooked:
        server = hooked.start("serve")
        other_key = hooked.new_key("other")
        try:
            with server.client(hooked.key) as hanging, server.client(other_key) as other:
                stuck = submit_all(hanging, receiver.url("/hangs"), [f"h{i}" for i in range(20)])
                # per_owner_concurrency (8) attempts are held; the other 12 wait their turn.
                eventually(lambda: receiver.hanging, lambda n: n == 8, what="8 held", timeout=30)
                fine = submit_all(other, receiver.url("/fine"), [f"f{i}" for i in range(40)])
                eventually(
                    lambda: delivered_ids(receiver, "/fine"),
                    lambda counted: set(counted) == set(fine),
                    what="the other owner's 40 events",
                    timeout=30,
                    show=len,
                )
                # Delivered while the hanging receiver still holds its first 8 attempts.
                assert receiver.hanging == 8 and len(receiver.to("/hangs")) == 8
                assert {other.get(f"{PATH}/{i}").json()["status"] for i in fine} == {"COMPLETED"}
                states = {hanging.get(f"{PATH}/{i}").json()["status"] for i in stuck}
                assert states == {"COMPLETED"}, "jobs ran on while their deliveries hung"
        finally:
            receiver.release()
