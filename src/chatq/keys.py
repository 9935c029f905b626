"""API keys: created with a secret shown once, stored hashed, revoked by id."""

from __future__ import annotations

import hashlib
import secrets
import time

from chatq.domain import ApiKey
from chatq.store import Store

KEY_PREFIX = "cq"
FIRST_KEY_NAME = "default"


def new_api_key() -> tuple[str, str]:
    """A fresh (key id, secret); the secret embeds the id so that it can be listed and revoked."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}-{key_id}-{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    # Keys are 256-bit random: a fast hash is enough, a slow KDF would only slow every request.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    store: Store,
    name: str,
    owner: str | None = None,
    webhook_url: str | None = None,
    admin: bool = False,
    max_unfinished: int | None = None,
    rpm: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key for owner (by default, the key's name), with a default webhook URL if given
    (already checked), an admin key if asked, and its own limits if given (None: the
    server's default; 0: none); returns it with its secret."""
    key_id, secret = new_api_key()
    key = ApiKey(
        id=key_id,
        name=name,
        owner=owner or name,
        created_at=time.time(),
        revoked_at=None,
        webhook_url=webhook_url,
        admin=admin,
        max_unfinished=max_unfinished,
        rpm=rpm,
    )
    await store.insert_key(key, hash_secret(secret))
    return key, secret


async def ensure_first_key(store: Store) -> str | None:
    """On a database with no keys at all, create one so a new user can call the API at once."""
    if await store.count_keys():
        return None
    _, secret = await create_key(store, FIRST_KEY_NAME)
    return secret
