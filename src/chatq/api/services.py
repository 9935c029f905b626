"""What the routes need, built once per process and held on app.state."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from chatq.api.owner_cache import OwnerCache
from chatq.api.pagination import TokenCodec
from chatq.backends.routing import Router
from chatq.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    store: Store
    router: Router
    tokens: TokenCodec
    owners: OwnerCache


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
