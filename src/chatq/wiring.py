"""Wiring: each process role builds what it runs, and only that. `serve` is the API and a
worker in one process; `api` builds no backend (it needs only the model table to accept or
refuse a model); `worker` builds no HTTP side."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

import chatq
from chatq import event_loop
from chatq.api.app import Lifespan, create_app
from chatq.api.context import ApiContext
from chatq.api.events import EventIds
from chatq.api.owner_cache import OwnerCache
from chatq.api.pagination import TokenCodec
from chatq.backends.models import ModelTable
from chatq.backends.pool import BackendPool
from chatq.config import Settings
from chatq.keys import ensure_first_key
from chatq.metrics.exposition import Exposition
from chatq.metrics.server import metrics_server
from chatq.store import Store, open_store
from chatq.worker.worker import Worker

log = logging.getLogger("chatq")
Announce = Callable[[str], None]


@asynccontextmanager
async def migrated_store(settings: Settings, *, must_exist: bool) -> AsyncIterator[Store]:
    store = await open_store(
        settings.database_url, pool_size=settings.pool_size, must_exist=must_exist
    )
    try:
        applied = await store.migrate()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def backend_pool(table: ModelTable) -> AsyncIterator[BackendPool]:
    pool = BackendPool.build(table)
    try:
        yield pool
    finally:
        await pool.aclose()


async def serve(settings: Settings, *, with_worker: bool, announce: Announce) -> None:
    """Run the HTTP API (and, with_worker, a worker in the same process) until SIGTERM/SIGINT."""
    table = ModelTable.from_config(settings.backends)
    role = "API and worker" if with_worker else "API"
    async with migrated_store(settings, must_exist=not with_worker) as store:
        _log_start(role, settings, table)
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
    _started()
    announce(f"chatq listening on http://{host}:{port}")


def _started() -> None:
    """What start-up built (the modules, the app, the store, the backends) lives as long as
    the process: gc.freeze() takes it out of the collector's reach. Its full collections
    walked it all again each time, and jobs and requests come and go fast enough to run many:
    frozen, a worker's drain takes a fifth less CPU a job (docs/benchmarks.md §3)."""
    gc.freeze()


async def work(settings: Settings, announce: Announce) -> None:
    """Run a worker alone until SIGTERM/SIGINT."""
    table = ModelTable.from_config(settings.backends)
    async with (
        migrated_store(settings, must_exist=True) as store,
        backend_pool(table) as backends,
        contextlib.AsyncExitStack() as stack,
    ):
        _log_start("worker", settings, table)
        if settings.metrics_port is not None:
            url = await stack.enter_async_context(
                metrics_server(
                    store,
                    settings.metrics_host,
                    settings.metrics_port,
                    require_key=settings.metrics_require_key,
                )
            )
            announce(f"chatq worker metrics on {url}")
        worker = Worker(store, backends, settings.worker, webhooks=settings.webhooks)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        _started()
        announce(f"chatq worker {worker.id} ready")
        try:
            await worker.run(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


def _log_start(role: str, settings: Settings, table: ModelTable) -> None:
    log.info(
        "starting %s (chatq %s, %s loop) on %s; models: %s",
        role,
        chatq.__version__,
        event_loop.name(),
        _redacted(settings.database_url),
        ", ".join(table.models()),
    )


def _redacted(url: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
