"""Bearer authentication: an API key names its owner; an owner sees only its own requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatq.api.errors import ApiError
from chatq.api.services import Services, services
from chatq.domain import hash_secret

_MAX_KEY_CHARS = 256

bearer = HTTPBearer(auto_error=False, description="An API key from `chatq keys create`.")


async def current_owner(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    svc: Annotated[Services, Depends(services)],
) -> str:
    if credentials is None:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <api key>'")
    key = credentials.credentials
    if not key or len(key) > _MAX_KEY_CHARS or not key.isascii():
        raise ApiError(401, "invalid API key")
    owner = await svc.store.owner_of_key(hash_secret(key))
    if owner is None:
        raise ApiError(401, "invalid API key")
    return owner


Owner = Annotated[str, Depends(current_owner)]
