"""Webhooks through the real server, on SQLite and PostgreSQL, with a real receiver on
127.0.0.1: signed events (checked with the standardwebhooks package), per-request and
per-key URLs, retries with one webhook-id, the attempts route, 410, rotation, the CLI, and
the SSRF guard."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from perplexity import Perplexity
from standardwebhooks.webhooks import Webhook

from tests.acceptance.conftest import (
    PATH,
    UPSTREAM_KEY,
    chat,
    serving,
    wait_finished,
    write_config,
)
from tests.fakes.receiver import Received, Receiver, receiving
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer, run_cli
from tests.waiting import eventually

SONAR = "/v1/async/sonar"
FAST_WEBHOOKS: dict[str, object] = {
    "allow_private_networks": True,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    "poll_interval_s": 0.2,
}
_paths = itertools.count()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_upstream: FakeUpstream,
) -> Iterator[ChatqServer]:
    """`chatq serve` that may deliver to 127.0.0.1 and retries within a fraction of a second."""
    workdir = tmp_path_factory.mktemp("chatq-webhooks")
    config = write_config(workdir / "chatq.toml", module_upstream.base_url, FAST_WEBHOOKS)
    with serving(request.param, workdir, config) as proc:
        yield proc


class Owner:
    """A fresh owner: its name, a key, an HTTP client with that key."""

    def __init__(self, server: ChatqServer, *key_args: str) -> None:
        self.server = server
        self.name = f"hooks-{next(_paths)}-{time.monotonic_ns()}"
        done = run_cli("keys", "create", self.name, *key_args, "--database", server.database)
        assert done.returncode == 0, done.stderr
        self.key = done.stdout.strip().splitlines()[-1]
        self.http = server.client(self.key)

    def secret(self, *extra: str) -> str:
        done = run_cli("webhooks", "secret", self.name, *extra, "--database", self.server.database)
        assert done.returncode == 0, done.stderr
        secret = done.stdout.strip().splitlines()[-1]
        assert secret.startswith("whsec_")
        return secret

    def create(self, webhook_url: str | None = None, prefix: str = PATH, **chat_args: Any) -> str:
        body: dict[str, Any] = chat(**chat_args)
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        response = self.http.post(prefix, json=body)
        assert response.status_code == 200, response.text
        request_id: str = response.json()["id"]
        return request_id

    def webhook(self, request_id: str, prefix: str = PATH) -> httpx.Response:
        return self.http.get(f"{prefix}/{request_id}/webhook")

    def webhook_when(
        self, request_id: str, until: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        return eventually(lambda: self.webhook(request_id).json(), until, what=what, timeout=30)


@pytest.fixture
def owner(server: ChatqServer) -> Iterator[Owner]:
    made = Owner(server)
    with made.http:
        yield made


def new_path() -> str:
    return f"/hook-{next(_paths)}"


def posts(receiver: Receiver, path: str, count: int = 1) -> list[Received]:
    """What the receiver got at path, once it has at least count POSTs."""
    return eventually(
        lambda: receiver.to(path),
        lambda got: len(got) >= count,
        what=f"{count} POST(s) to {path}",
        timeout=30,
        show=len,
    )


def test_the_sdk_sets_webhook_url_and_the_event_verifies(
    server: ChatqServer, owner: Owner, receiver: Receiver
) -> None:
    path = new_path()
    with Perplexity(api_key=owner.key, base_url=server.base_url, max_retries=0) as client:
        created = client.async_.chat.completions.create(
            request={"model": "echo", "messages": [{"role": "user", "content": "ping"}]},
            extra_body={"webhook_url": receiver.url(path)},
        )
        (post,) = posts(receiver, path)
        # The attempts route through the SDK's own client, as for any route it lacks.
        seen = client.get(f"{SONAR}/{created.id}/webhook", cast_to=object)
        assert isinstance(seen, dict) and seen["id"] == post.webhook_id
    secret = owner.secret()
    assert Webhook(secret).verify(post.body, post.headers) == post.event
    assert post.webhook_id == "msg_" + created.id.replace("-", "")
    assert post.headers["content-type"] == "application/json"
    event = post.event
    assert event["type"] == "async_chat_completion.completed"
    assert event["timestamp"].endswith("Z")
    assert event["data"] == owner.http.get(f"{PATH}/{created.id}").json()
    assert event["data"]["response"]["choices"][0]["message"]["content"] == "ping"

    for prefix in (PATH, SONAR):
        shown = owner.webhook_when(
            created.id, lambda w: w["status"] == "DELIVERED", "the delivery recorded"
        )
        assert owner.webhook(created.id, prefix).json() == shown
    assert shown["id"] == post.webhook_id and shown["url"] == receiver.url(path)
    assert [(a["attempt"], a["status_code"], a["error"]) for a in shown["attempts"]] == [
        (1, 200, None)
    ]
    assert shown["next_attempt_at"] is None and shown["delivered_at"] is not None


def test_retries_keep_the_webhook_id_and_are_listed(
    server: ChatqServer, owner: Owner, receiver: Receiver
) -> None:
    path = new_path()
    receiver.script(path, 500, 503)
    request_id = owner.create(receiver.url(path), prefix=SONAR)
    got = posts(receiver, path, 3)
    assert [p.status for p in got] == [500, 503, 200]
    assert len({p.webhook_id for p in got}) == 1, "the same webhook-id on every attempt"
    secret = owner.secret()
    for post in got:
        Webhook(secret).verify(post.body, post.headers)
    shown = owner.webhook_when(request_id, lambda w: w["status"] == "DELIVERED", "delivered")
    assert [(a["status_code"], a["error"]) for a in shown["attempts"]] == [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (200, None),
    ]
    other = Owner(server)
    with other.http:
        assert other.webhook(request_id).status_code == 404, "another owner's request"
    assert owner.webhook("no-such-request").status_code == 404


def test_a_cancelled_request_sends_a_failed_event(
    owner: Owner, receiver: Receiver, module_upstream: FakeUpstream
) -> None:
    path = new_path()
    module_upstream.rule("slow webhook job", Reply(delay_s=30))
    request_id = owner.create(receiver.url(path), content="slow webhook job", model="fake-model")
    waiting = owner.webhook(request_id).json()
    assert waiting["status"] == "WAITING" and waiting["attempts"] == []
    assert owner.http.post(f"{PATH}/{request_id}/cancel").status_code == 200
    (post,) = posts(receiver, path)
    assert post.event["type"] == "async_chat_completion.failed"
    assert post.event["data"]["status"] == "FAILED"
    assert post.event["data"]["error_message"] == "cancelled by the client"
    module_upstream.rule("slow webhook job", None)


def test_a_keys_default_webhook_and_changing_it(server: ChatqServer, receiver: Receiver) -> None:
    path = new_path()
    keyed = Owner(server, "--webhook", receiver.url(path))
    with keyed.http:
        listed = run_cli("keys", "list", "--database", server.database)
        assert f"webhook={receiver.url(path)}" in listed.stdout
        first = keyed.create(content="by default")
        (post,) = posts(receiver, path)
        assert post.event["data"]["id"] == first
        own = new_path()
        second = keyed.create(receiver.url(own), content="its own")
        assert posts(receiver, own)[0].event["data"]["id"] == second, "webhook_url wins"

        done = run_cli("keys", "update", keyed.name, "--no-webhook", "--database", server.database)
        assert done.returncode == 0, done.stderr
        time.sleep(1.2)  # the API remembers a key for key_cache_s (1 s here)
        third = keyed.create(content="none now")
        wait_finished(keyed.http, third)
        gone = keyed.webhook(third)
        assert gone.status_code == 404 and "has no webhook" in gone.json()["error"]["message"]
        assert len(receiver.to(path)) == 1


def test_a_flat_body_may_name_a_webhook_which_is_not_sent_upstream(
    owner: Owner, receiver: Receiver, module_upstream: FakeUpstream
) -> None:
    path = new_path()
    content = f"flat with a webhook at {path}"
    flat: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": content}],
        "webhook_url": receiver.url(path),
    }
    response = owner.http.post(SONAR, json=flat)
    assert response.status_code == 200, response.text
    (post,) = posts(receiver, path)
    assert post.event["data"]["id"] == response.json()["id"]
    (sent,) = [c for c in module_upstream.calls if c["messages"][-1]["content"] == content]
    assert "webhook_url" not in sent, "chatq's field, never the model's"
    wrong = owner.http.post(SONAR, json={**flat, "webhook_url": ["x"]})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "webhook_url"]


def test_bad_webhook_urls_are_refused_with_400(owner: Owner) -> None:
    for prefix in (PATH, SONAR):
        for url, why in (
            ("ftp://example.com/x", "http or https"),
            ("not a url", "spaces"),
            ("https://", "must name a host"),
            ("http://example.com:99999/", "not a valid URL"),
        ):
            body = {**chat(), "webhook_url": url}
            response = owner.http.post(prefix, json=body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["type"] == "invalid_webhook_url" and error["code"] == 400
            assert why in error["message"]
        response = owner.http.post(prefix, json={**chat(), "webhook_url": 42})
        assert response.status_code == 422
    assert owner.http.get(PATH).json()["requests"] == [], "nothing was stored"
    bad = run_cli(
        "keys", "create", "x", "--webhook", "gopher://h", "--database", owner.server.database
    )
    assert bad.returncode == 2 and "http or https" in bad.stderr


def test_a_410_disables_the_url_until_it_is_set_again(
    server: ChatqServer, receiver: Receiver
) -> None:
    path = new_path()
    url = receiver.url(path)
    receiver.script(path, 410)
    keyed = Owner(server, "--webhook", url)
    with keyed.http:
        gone = keyed.create(content="gone")
        shown = keyed.webhook_when(gone, lambda w: w["status"] == "FAILED", "given up on a 410")
        assert [a["status_code"] for a in shown["attempts"]] == [410]
        assert "410 Gone" in shown["last_error"]

        skipped = keyed.create(content="by the disabled default")
        shown = keyed.webhook_when(skipped, lambda w: w["status"] == "FAILED", "not sent")
        assert shown["attempts"][0]["status_code"] is None
        assert "not sent" in shown["attempts"][0]["error"]
        assert len(receiver.to(path)) == 1

        again = keyed.create(url, content="named again")
        keyed.webhook_when(again, lambda w: w["status"] == "DELIVERED", "delivered again")
        assert [p.event["data"]["id"] for p in receiver.to(path)] == [gone, again]

        failed = run_cli("webhooks", "deliveries", "--failed", "--database", server.database)
        assert failed.returncode == 0
        line = next(line for line in failed.stdout.splitlines() if skipped in line)
        assert "FAILED" in line and "not sent" in line
        webhook_id = line.split()[0]
        replayed = run_cli("webhooks", "replay", webhook_id, "--database", server.database)
        assert replayed.returncode == 0, replayed.stderr
        keyed.webhook_when(skipped, lambda w: w["status"] == "DELIVERED", "the replay delivered")
        (post,) = [p for p in receiver.to(path) if p.event["data"]["id"] == skipped]
        assert post.webhook_id == webhook_id
        missing = run_cli("webhooks", "replay", "msg_nope", "--database", server.database)
        assert missing.returncode == 1 and "no webhook delivery" in missing.stderr


def test_after_a_rotation_both_secrets_verify(owner: Owner, receiver: Receiver) -> None:
    path = new_path()
    old = owner.secret()
    new = owner.secret("--rotate")
    assert new != old
    owner.create(receiver.url(path))
    (post,) = posts(receiver, path)
    assert post.headers["webhook-signature"].count("v1,") == 2
    assert Webhook(new).verify(post.body, post.headers) == post.event
    assert Webhook(old).verify(post.body, post.headers) == post.event
    assert owner.secret() == new


def test_with_private_networks_refused_a_loopback_url_is_recorded_as_refused(
    tmp_path_factory: pytest.TempPathFactory, module_upstream: FakeUpstream, receiver: Receiver
) -> None:
    workdir = tmp_path_factory.mktemp("chatq-ssrf")
    config = write_config(
        workdir / "chatq.toml", module_upstream.base_url, {"poll_interval_s": 0.2}
    )
    guarded = ChatqServer(
        workdir,
        "--database",
        f"sqlite:///{workdir / 'c.db'}",
        "--config",
        str(config),
        env={"FAKE_UPSTREAM_KEY": UPSTREAM_KEY},
    ).start()
    try:
        someone = Owner(guarded)
        with someone.http:
            by_address, by_name = new_path(), new_path()
            refused = {
                someone.create(receiver.url(by_address)): "127.0.0.1 is a loopback address",
                someone.create(f"http://localhost:{receiver.port}{by_name}"): "a loopback",
            }
            for request_id, why in refused.items():
                shown = someone.webhook_when(
                    request_id, lambda w: w["status"] == "FAILED", "the delivery refused"
                )
                (attempt,) = shown["attempts"]
                assert attempt["status_code"] is None
                assert "refused by the SSRF guard" in attempt["error"] and why in attempt["error"]
                assert "allow_private_networks" in attempt["error"]
            assert receiver.to(by_address) == [] and receiver.to(by_name) == []
    finally:
        assert guarded.stop() in (0, -15), guarded.log()
