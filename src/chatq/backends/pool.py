"""The backend pool: a built backend for each row of the model table. Only processes that
run jobs build one."""

from __future__ import annotations

from collections.abc import Mapping

from chatq.backends.base import Backend
from chatq.backends.models import ModelTable
from chatq.backends.pricing import priced
from chatq.backends.registry import BACKEND_TYPES
from chatq.domain import JSON


class BackendPool:
    def __init__(self, table: ModelTable, backends: Mapping[str, Backend]) -> None:
        """backends: by backend name, one for each backend of the table."""
        self.table = table
        self._backends = dict(backends)

    @classmethod
    def build(cls, table: ModelTable) -> BackendPool:
        return cls(table, {c.name: BACKEND_TYPES[c.type](c) for c in table.backends})

    def for_model(self, model: str) -> Backend | None:
        config = self.table.route(model)
        return None if config is None else self._backends[config.name]

    def priced(self, model: str, response: JSON) -> JSON:
        """response with usage.cost from the configured price of model, if it has one and
        the upstream reported no cost."""
        config = self.table.route(model)
        price = None if config is None else config.price(model)
        return response if price is None else priced(response, price)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
