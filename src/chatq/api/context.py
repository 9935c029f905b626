"""What the routes need, built once per API process and held on app.state."""

from __future__ import annotations

from dataclasses import dataclass

from chatq.api.events import EventIds
from chatq.api.owner_cache import OwnerCache
from chatq.api.pagination import TokenCodec
from chatq.backends.models import ModelTable
from chatq.config import LimitSettings
from chatq.metrics.exposition import Exposition
from chatq.store import Store

_NO_LIMITS = LimitSettings()


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    models: ModelTable  # to accept or refuse a model; the API builds no backend
    tokens: TokenCodec
    owners: OwnerCache
    event_ids: EventIds
    exposition: Exposition  # what GET /metrics answers
    metrics_require_key: bool = False  # GET /metrics wants a valid API key
    limits: LimitSettings = _NO_LIMITS  # for keys that set none of their own
