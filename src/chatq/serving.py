"""Serving the HTTP API: `chatq api`, and `chatq serve`, the API with a worker in the same
process. Apart from wiring.py so that `chatq worker` imports none of FastAPI, uvicorn and
the API's modules (about 0.3 s and 15 MB of its start-up)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from chatq.api.app import Lifespan, create_app
from chatq.api.context import ApiContext
from chatq.api.events import EventIds
from chatq.api.owner_cache import OwnerCache
from chatq.api.pagination import TokenCodec
from chatq.backends.models import ModelTable
from chatq.config import Settings
from chatq.keys import ensure_first_key
from chatq.metrics.exposition import Exposition
from chatq.store import Store
from chatq.wiring import Announce, backend_pool, log_start, migrated_store, started
from chatq.worker.worker import Worker


async def serve(settings: Settings, *, with_worker: bool, announce: Announce) -> None:
    """Run the HTTP API (and, with_worker, a worker in the same process) until SIGTERM/SIGINT."""
    table = ModelTable.from_config(settings.backends)
    role = "API and worker" if with_worker else "API"
    async with migrated_store(settings, must_exist=not with_worker) as store:
        log_start(role, settings, table)
        first = await ensure_first_key(store)
        if first is not None:
            announce("No API keys yet: created key 'default'. Use it as your bearer token:")
            announce(first)
        context = ApiContext(
            store,
            table,
            TokenCodec(await store.secret("next_token")),
            OwnerCache(settings.key_cache_s),
            EventIds(await store.secret("event_id")),
            Exposition(store),
            settings.metrics_require_key,
            settings.limits,
        )
        lifespan = _worker_lifespan(store, table, settings) if with_worker else None
        app = create_app(context, lifespan, settings.max_request_bytes, settings.access_log)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, access_log=False, log_config=None
        )
        server = uvicorn.Server(config)
        announcer = asyncio.create_task(_announce_address(server, announce))
        try:
            await server.serve()
        finally:
            announcer.cancel()


def _worker_lifespan(store: Store, table: ModelTable, settings: Settings) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with backend_pool(table) as backends:
            stop = asyncio.Event()
            worker = Worker(store, backends, settings.worker, webhooks=settings.webhooks)
            task = asyncio.create_task(worker.run(stop), name="chatq-worker")
            try:
                yield
            finally:
                # The HTTP side has stopped; now the worker drains within its grace period.
                stop.set()
                await task

    return lifespan


async def _announce_address(server: uvicorn.Server, announce: Announce) -> None:
    """Say where we listen once bound: with --port 0 only the socket knows the port."""
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    started()
    announce(f"chatq listening on http://{host}:{port}")
