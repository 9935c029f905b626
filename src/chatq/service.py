"""Wiring: open the store and backends, then run the API, the worker, or both in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from chatq.api.app import Lifespan, create_app
from chatq.api.owner_cache import OwnerCache
from chatq.api.pagination import TokenCodec
from chatq.api.services import Services
from chatq.backends.routing import build_router
from chatq.config import Settings, WorkerSettings
from chatq.keys import ensure_first_key
from chatq.store import open_store
from chatq.worker.worker import Worker

log = logging.getLogger("chatq")


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Services]:
    """Store migrated and backends ready; both closed on exit."""
    store = await open_store(settings.database_url, pool_size=settings.pool_size)
    try:
        applied = await store.migrate()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        router = build_router(settings.backends)
        try:
            tokens = TokenCodec(await store.secret("next_token"))
            yield Services(store, router, tokens, OwnerCache(settings.key_cache_s))
        finally:
            await router.aclose()
    finally:
        await store.close()


def _worker_lifespan(svc: Services, settings: WorkerSettings) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        worker = Worker(svc.store, svc.router, settings)
        task = asyncio.create_task(worker.run(stop), name="chatq-worker")
        try:
            yield
        finally:
            # The HTTP side has stopped; now the worker drains within its grace period.
            stop.set()
            await task

    return lifespan


async def serve(settings: Settings, *, with_worker: bool, announce: Callable[[str], None]) -> None:
    """Run the HTTP API (and, with_worker, a worker in the same process) until SIGTERM/SIGINT."""
    async with opened(settings) as svc:
        first = await ensure_first_key(svc.store)
        if first is not None:
            announce("No API keys yet: created key 'default'. Use it as your bearer token:")
            announce(first)
        lifespan = _worker_lifespan(svc, settings.worker) if with_worker else None
        app = create_app(svc, lifespan, settings.max_request_bytes)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, access_log=False, log_config=None
        )
        server = uvicorn.Server(config)
        announcer = asyncio.create_task(_announce_address(server, announce))
        try:
            await server.serve()
        finally:
            announcer.cancel()


async def _announce_address(server: uvicorn.Server, announce: Callable[[str], None]) -> None:
    """Say where we listen once bound: with --port 0 only the socket knows the port."""
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    announce(f"chatq listening on http://{host}:{port}")


async def work(settings: Settings, announce: Callable[[str], None]) -> None:
    """Run a worker alone until SIGTERM/SIGINT."""
    async with opened(settings) as svc:
        worker = Worker(svc.store, svc.router, settings.worker)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        announce(f"chatq worker {worker.id} ready")
        try:
            await worker.run(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
