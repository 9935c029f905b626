"""Waiters and event streams on PostgreSQL, seen from outside the API process: clients that
vanish leave nothing behind; a dropped LISTEN connection does not strand anyone."""

from __future__ import annotations

import socket
import struct
import threading
import time
from urllib.parse import urlsplit

import httpx

from tests.acceptance.conftest import PATH
from tests.fakes.upstream import FakeUpstream, Reply
from tests.faults.conftest import Deployment
from tests.faults.events import QUESTION, Transcript, answer, submit_streamed
from tests.faults.observe import clients_of, database_ports, open_fds, sessions_of, terminate
from tests.waiting import eventually


def open_raw(base_url: str, key: str, path: str) -> socket.socket:
    """A client that sent GET path and reads nothing: it only holds the connection open."""
    where = urlsplit(base_url)
    assert where.hostname is not None and where.port is not None
    client = socket.create_connection((where.hostname, where.port), timeout=10)
    head = f"GET {path} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {key}\r\n"
    client.sendall(f"{head}\r\n".encode())
    return client


def read_until(client: socket.socket, marker: bytes) -> None:
    received = b""
    while marker not in received:
        chunk = client.recv(65536)
        assert chunk, f"closed before {marker!r}; got {received!r}"
        received += chunk


def vanish(client: socket.socket) -> None:
    """Go away abruptly: a TCP reset, no goodbye."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


CLIENTS = 100  # of each kind
POOL_SIZE = 10  # chatq's default pool_size


def test_clients_that_vanish_free_everything_they_held(pg_deployment: Deployment) -> None:
    deployment = pg_deployment
    api = deployment.start("api", "--access-log")  # no worker: nothing finishes
    assert api.proc is not None
    pid, port = api.proc.pid, urlsplit(api.base_url).port
    assert port is not None
    # Before any client came: what the process holds besides its database connections.
    held_before = fds_besides_the_database(pid, deployment.url)
    with api.client(deployment.key) as client:
        ids = [submit_streamed(client, f"nobody runs this {i}") for i in range(10)]
        # The first waiter starts the process's one LISTEN connection: before the baseline.
        assert client.get(f"{PATH}/{ids[0]}", params={"wait": 0.1}).status_code == 200
    sessions_before = sessions_of(pid, deployment.url)

    clients = []
    for i in range(CLIENTS):
        request_id = ids[i % len(ids)]
        clients.append(open_raw(api.base_url, deployment.key, f"{PATH}/{request_id}?wait=60"))
        stream = open_raw(api.base_url, deployment.key, f"{PATH}/{request_id}/events")
        read_until(stream, b"event: status")  # being served
        clients.append(stream)
    eventually(
        lambda: clients_of(pid, port),
        lambda n: n == 2 * CLIENTS,
        what="every client connected",
        timeout=30,
    )
    fds_open = open_fds(pid)
    sessions_open = sessions_of(pid, deployment.url)
    # Waiting costs no query: no session of the API changes state meanwhile (the fallback
    # poller would, every 0.5 s). The listener's keep-alive ping is its own business.
    pool_open = {s["pid"]: s["state_change"] for s in sessions_open if not s["listener"]}
    time.sleep(2.0)
    pool_later = {
        s["pid"]: s["state_change"] for s in sessions_of(pid, deployment.url) if not s["listener"]
    }

    for one in clients:
        vanish(one)
    eventually(
        lambda: fds_besides_the_database(pid, deployment.url),
        lambda n: n == held_before,
        what=f"the process's fds besides its database connections back to {held_before}",
        timeout=30,
    )
    sessions_after = sessions_of(pid, deployment.url)
    fds_after = open_fds(pid)
    # Each handler ended when its client left, not when its wait would have: the access log
    # has a line for each, written as the handler returns, its watch released.
    ended = eventually(
        lambda: access_lines(api.log(), ids),
        lambda lines: len(lines) == 2 * CLIENTS,
        what="an access log line for every client",
        timeout=30,
        show=len,
    )

    print(
        f"\n{CLIENTS} long-polls + {CLIENTS} event streams: fds {held_before} + database "
        f"-> {fds_open} -> {fds_after}; database sessions {len(sessions_before)} -> "
        f"{len(sessions_open)} -> {len(sessions_after)}"
    )
    assert len(sessions_open) <= POOL_SIZE + 1, "the pool and the listener, whatever N"
    assert all(s["state"] == "idle" for s in sessions_open), sessions_open
    assert pool_later == pool_open, "no query while the clients waited"
    assert {s["pid"] for s in sessions_after} == {s["pid"] for s in sessions_open}
    polls = [line for line in ended if "?wait=60" in line]
    streams = [line for line in ended if "/events" in line]
    assert len(polls) == len(streams) == CLIENTS
    # 499 (nginx's "client closed request"), as the sync route logs it: not a 404.
    assert all(line.split()[-2] == "499" for line in polls), polls[:3]
    assert all(float(line.split()[-1].removesuffix("ms")) < 30_000 for line in polls)


def fds_besides_the_database(pid: int, database_url: str) -> int:
    return open_fds(pid) - len(database_ports(pid, database_url))


def access_lines(log: str, ids: list[str]) -> list[str]:
    """The access log's lines for long-polls and event streams of the requests."""
    return [
        line
        for line in log.splitlines()
        if "chatq.access" in line
        and any(f"/{i}?wait=60 " in line or f"/{i}/events " in line for i in ids)
    ]


def test_a_dropped_listen_connection_strands_no_waiter(
    pg_deployment: Deployment, upstream: FakeUpstream
) -> None:
    deployment = pg_deployment
    api, _ = deployment.start_together(["api"], ["worker"])
    assert api.proc is not None
    pid = api.proc.pid
    # About 2 s: time for the test to find the API's listener (it connects with the first
    # watcher) and terminate it while the request still runs.
    upstream.rule(QUESTION, Reply(delay_s=0.5, pieces=8, token_delay_s=0.15))
    with api.client(deployment.key) as client:
        request_id = submit_streamed(client, QUESTION)

    polled: list[tuple[float, httpx.Response]] = []
    seen = Transcript()
    streamed: list[httpx.TransportError | None] = []
    killed: list[tuple[float, int]] = []  # when, which backend
    stop_killing = threading.Event()

    def long_poll() -> None:
        with api.client(deployment.key) as waiter:
            response = waiter.get(f"{PATH}/{request_id}", params={"wait": 30}, timeout=40)
            polled.append((time.monotonic(), response))

    def keep_the_listener_away() -> None:
        # The API's listener, each time it reconnects, until told to stop: notifications
        # cannot be relied on while the request finishes.
        while not stop_killing.is_set():
            mine = [s["pid"] for s in sessions_of(pid, deployment.url) if s["listener"]]
            if terminate(deployment.url, mine):
                killed.extend((time.monotonic(), backend) for backend in mine)
            stop_killing.wait(0.05)

    threads = [
        threading.Thread(target=long_poll),
        threading.Thread(
            target=lambda: streamed.append(seen.follow(api, deployment.key, request_id))
        ),
        threading.Thread(target=keep_the_listener_away),
    ]
    for t in threads:
        t.start()
    try:
        eventually(lambda: len(killed), what="the API's listener terminated", timeout=20)
        with api.client(deployment.key) as client:
            finished = eventually(
                lambda: client.get(f"{PATH}/{request_id}").json(),
                lambda body: body["status"] == "COMPLETED",
                what="a plain GET to see the request COMPLETED",
                timeout=30,
            )
        finished_at = time.monotonic()
        threads[0].join(timeout=40)
        threads[1].join(timeout=40)
    finally:
        stop_killing.set()
        for t in threads:
            t.join(timeout=40)

    assert killed[0][0] < finished_at, "the listener was gone before the request finished"
    assert polled, "the long-poll returned"
    returned_at, response = polled[0]
    assert response.status_code == 200 and response.json() == finished
    assert answer(finished) == f"upstream: {QUESTION}"
    # Within the fallback poller's 0.5 s, generously: not at the listener's next keep-alive.
    assert returned_at - finished_at < 2.0, "answered when it finished"
    assert streamed == [None] and seen.done == finished, "the event stream got to its done"
    assert seen.text == answer(finished)
    assert "LISTEN connection lost" in api.log()
    terminated = {backend for _, backend in killed}
    back = eventually(
        lambda: [s for s in sessions_of(pid, deployment.url) if s["listener"]],
        lambda sessions: len(sessions) == 1 and sessions[0]["pid"] not in terminated,
        what="the API's listener back",
        timeout=20,
    )
    print(
        f"\nLISTEN connection terminated {len(killed)} time(s) while the request ran: the "
        f"long-poll answered {returned_at - finished_at:+.2f}s after a plain GET saw it "
        f"finished; the listener came back as backend {back[0]['pid']}"
    )
