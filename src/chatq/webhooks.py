"""Webhooks as the wire sees them (Standard Webhooks): which URLs are accepted, the event
body, and its signature. The API checks URLs with it, the worker signs with it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from chatq.domain import WEBHOOK_SECRET_PREFIX, Delivery, Job
from chatq.objects import full_object

MAX_URL_CHARS = 2048


class InvalidWebhookUrl(ValueError):
    """A webhook URL chatq will not accept; the message says why."""


def check_webhook_url(url: str) -> str:
    """url, if it is an absolute http(s) URL with a host; else InvalidWebhookUrl.

    Where it points is checked at delivery time, after DNS (worker/ssrf.py): a name that
    resolves to a public address today may not tomorrow."""
    if not url or len(url) > MAX_URL_CHARS:
        raise InvalidWebhookUrl(f"webhook_url must be 1 to {MAX_URL_CHARS} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidWebhookUrl(
            "webhook_url must be ASCII with no spaces or control characters "
            "(percent-encode the path, use the IDNA form of the host)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in 0..65535
    except ValueError as exc:
        raise InvalidWebhookUrl(f"webhook_url is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidWebhookUrl(
            f"webhook_url must be an http or https URL, not {parts.scheme or 'relative'!r}"
        )
    if not parts.hostname:
        raise InvalidWebhookUrl("webhook_url must name a host, as in https://example.com/hook")
    if port == 0:
        raise InvalidWebhookUrl("webhook_url's port must be 1 to 65535")
    if parts.fragment or url.endswith("#"):
        raise InvalidWebhookUrl("webhook_url must not have a #fragment (it is never sent)")
    return url


def event_body(delivery: Delivery, job: Job) -> bytes:
    """The body POSTed: the event type, when it happened, and the request as GET returns it."""
    when = datetime.fromtimestamp(delivery.created_at, UTC).isoformat().replace("+00:00", "Z")
    event = {"type": delivery.event_type, "timestamp": when, "data": full_object(job)}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: v1, then base64 HMAC-SHA256 of id.timestamp.body,
    keyed by the secret's bytes (base64 after whsec_)."""
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: a signature per secret, space-separated (during a
    rotation's overlap a receiver holding either secret can verify)."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)
