"""Webhook URLs, signatures and the SSRF guard's address rules, without a network.

Signatures are checked with the standardwebhooks package, an implementation none of us
wrote."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chatq.domain import (
    COMPLETED_EVENT,
    Delivery,
    Job,
    Status,
    WebhookSecrets,
    delivery_id,
    new_webhook_secret,
)
from chatq.webhooks import InvalidWebhookUrl, check_webhook_url, event_body, signature_header
from chatq.worker.ssrf import RefusedAddress, check_literal, refusal


def signed_headers(secrets: list[str], body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


def test_a_signature_verifies_with_standardwebhooks() -> None:
    secret = new_webhook_secret()
    body = b'{"type":"async_chat_completion.completed","data":{"id":"x"}}'
    headers = signed_headers([secret], body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    rotation = WebhookSecrets(new, old, rotated_at=1000.0)
    signing = rotation.signing(now=1000.0 + 10, overlap_s=60)
    assert signing == [new, old]
    body = b'{"a":1}'
    headers = signed_headers(signing, body)
    assert headers["webhook-signature"].count("v1,") == 2
    assert Webhook(new).verify(body, headers) == {"a": 1}
    assert Webhook(old).verify(body, headers) == {"a": 1}
    assert rotation.signing(now=1000.0 + 60, overlap_s=60) == [new], "the overlap ends"


def test_the_event_body_carries_the_full_object_with_its_metadata() -> None:
    job = Job(
        seq=1,
        id="4c4a5e0e-0000-4000-8000-000000000001",
        model="echo",
        status=Status.COMPLETED,
        created_at=1_800_000_000.5,
        started_at=1_800_000_001.0,
        completed_at=1_800_000_002.0,
        failed_at=None,
        metadata={"batch": "b-7", "team": "search"},
        owner="alice",
        request_hash="",
        response={"id": "r"},
        error_message=None,
        runs=1,
        stream=False,
        webhook_url="https://example.com/h",
    )
    delivery = Delivery(
        delivery_id(job.id),
        job.id,
        "alice",
        "https://example.com/h",
        COMPLETED_EVENT,
        1_800_000_002.25,
        0,
        1_800_000_002.25,
    )
    event = json.loads(event_body(delivery, job))
    assert event == {
        "type": COMPLETED_EVENT,
        "timestamp": "2027-01-15T08:00:02.250000Z",
        "data": {
            "id": job.id,
            "model": "echo",
            "status": "COMPLETED",
            "created_at": 1_800_000_000,
            "started_at": 1_800_000_001,
            "completed_at": 1_800_000_002,
            "failed_at": None,
            "metadata": {"batch": "b-7", "team": "search"},
            "response": {"id": "r"},
            "error_message": None,
        },
    }
    assert delivery.id == "msg_4c4a5e0e000040008000000000000001"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://127.0.0.1:8080/x?y=1",
        "https://[::1]:443/",
        "HTTPS://EXAMPLE.COM",
        "https://user:pass@example.com/",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("example.com/hook", "http or https"),
        ("/relative", "http or https"),
        ("https://", "must name a host"),
        ("https:///path", "must name a host"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com:0/", "port"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/\n", "control"),
        ("https://bücher.example/", "ASCII"),
        ("https://example.com/#frag", "fragment"),
        ("", "1 to 2048"),
        ("https://example.com/" + "a" * 2048, "1 to 2048"),
    ],
)
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=why):
        check_webhook_url(url)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("240.0.0.1", "reserved"),
        ("169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    found = refusal(ipaddress.ip_address(address), allow_private=False)
    assert found is not None and why in found


def test_public_addresses_pass_and_private_ones_when_allowed() -> None:
    for public in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"):
        assert refusal(ipaddress.ip_address(public), allow_private=False) is None
    for private in ("127.0.0.1", "10.0.0.1", "::1"):
        assert refusal(ipaddress.ip_address(private), allow_private=True) is None
    for metadata in ("169.254.169.254", "fd00:ec2::254"):
        assert refusal(ipaddress.ip_address(metadata), allow_private=True) is not None


def test_literal_hosts_are_checked_before_connecting() -> None:
    with pytest.raises(RefusedAddress, match=r"127\.0\.0\.1 is a loopback address; .*allow_priv"):
        check_literal("127.0.0.1", allow_private=False)
    with pytest.raises(RefusedAddress, match="loopback"):
        check_literal("[::1]", allow_private=False)
    check_literal("127.0.0.1", allow_private=True)
    check_literal("example.com", allow_private=False)  # names: the resolver checks them
