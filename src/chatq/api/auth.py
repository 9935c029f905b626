"""Bearer authentication: an API key names its owner; an owner sees only its own requests.

One plain dependency reads the Authorization header itself. FastAPI's HTTPBearer plus a
context dependency cost about a third of a submit's CPU in FastAPI's dependency machinery
(docs/benchmarks.md), so the bearer scheme is declared in the OpenAPI by hand instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from chatq.api.context import ApiContext
from chatq.api.errors import ApiError
from chatq.domain import KeyHolder, Limits
from chatq.keys import hash_secret

_MAX_KEY_CHARS = 256

SECURITY_SCHEMES: dict[str, Any] = {
    "HTTPBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `chatq keys create`.",
    }
}
SECURED: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


@dataclass(frozen=True, slots=True)
class Caller:
    owner: str
    ctx: ApiContext
    webhook_url: str | None = None  # the key's default webhook
    admin: bool = False  # an admin key: may read every owner's usage
    limits: Limits | None = None  # the key's, or the server's default; None: no limit


async def authenticate(request: Request) -> Caller:
    return await caller(request.app.state.context, request.headers.get("authorization", ""))


async def caller(ctx: ApiContext, authorization: str) -> Caller:
    """Who sends an Authorization header's value; an ApiError (401) if nobody."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <api key>'")
    if len(key) > _MAX_KEY_CHARS or not key.isascii():
        raise ApiError(401, "invalid API key")
    secret_hash = hash_secret(key)
    holder = ctx.owners.get(secret_hash)
    if holder is None:
        holder = await ctx.store.key_holder(secret_hash)
        if holder is None:
            raise ApiError(401, "invalid API key")
        ctx.owners.put(secret_hash, holder)
    return Caller(holder.owner, ctx, holder.webhook_url, holder.admin, _limits(holder, ctx))


def _limits(holder: KeyHolder, ctx: ApiContext) -> Limits | None:
    """The key's own limits, each defaulting to the server's; 0 is no limit."""
    cap = ctx.limits.max_unfinished if holder.max_unfinished is None else holder.max_unfinished
    rpm = ctx.limits.rpm if holder.rpm is None else holder.rpm
    if not cap and not rpm:
        return None
    return Limits(holder.key_id, cap or None, rpm or None)


Authenticated = Annotated[Caller, Depends(authenticate)]
