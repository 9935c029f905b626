"""API keys: created with a secret shown once, stored hashed, revoked by id."""

from __future__ import annotations

import time

from chatq.domain import ApiKey, hash_secret, new_api_key
from chatq.store import Store

FIRST_KEY_NAME = "default"


async def create_key(store: Store, name: str, owner: str | None = None) -> tuple[ApiKey, str]:
    """A new key for owner (by default, the key's name); returns it with its secret."""
    key_id, secret = new_api_key()
    key = ApiKey(id=key_id, name=name, owner=owner or name, created_at=time.time(), revoked_at=None)
    await store.insert_key(key, hash_secret(secret))
    return key, secret


async def ensure_first_key(store: Store) -> str | None:
    """On a database with no keys at all, create one so a new user can call the API at once."""
    if await store.count_keys():
        return None
    _, secret = await create_key(store, FIRST_KEY_NAME)
    return secret
