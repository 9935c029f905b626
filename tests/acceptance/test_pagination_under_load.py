"""Over HTTP: a walk over all pages, while other clients keep submitting, sees every request
that existed when it began exactly once, and ends."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.acceptance.conftest import PATH, chat, pages
from tests.harness import ChatqServer


def test_walk_while_others_submit(server: ChatqServer, new_key: Callable[[], str]) -> None:
    key = new_key()
    other_key = new_key()
    with server.client(key) as client:
        for i in range(45):
            assert client.post(PATH, json=chat(f"before {i}")).status_code == 200
        existing = [r["id"] for r in client.get(PATH, params={"limit": 1000}).json()["requests"]]
        assert len(existing) == 45

        stop = threading.Event()
        submitted: list[str] = []

        def submitter(secret: str) -> None:
            with server.client(secret) as c:
                for i in range(200):  # bounded even if the walk hangs
                    if stop.is_set():
                        return
                    r = c.post(PATH, json=chat(f"during {i}"))
                    assert r.status_code == 200
                    submitted.append(r.json()["id"])

        threads = [threading.Thread(target=submitter, args=(s,)) for s in (key, key, other_key)]
        for t in threads:
            t.start()
        try:
            seen: list[str] = []
            token: str | None = None
            for page in pages(client, 4, most=100):  # bounded even if the walk never ends
                seen.extend(r["id"] for r in page["requests"])
                token = page["next_token"]
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert token is None, "the walk ended"
    assert len(seen) == len(set(seen)), "no request twice"
    assert set(existing) <= set(seen), "every request that existed was seen"
    assert set(seen) <= set(existing) | set(submitted)
    assert [i for i in seen if i in set(existing)] == existing, "in the same newest-first order"
