"""Wiring: each process role builds what it runs, and only that. `worker` builds no HTTP
side and imports none (serving.py holds `serve` and `api`); what every role shares, the
migrated store, the backend pool and the start-up, is here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import chatq
from chatq import event_loop
from chatq.backends.models import ModelTable
from chatq.backends.pool import BackendPool
from chatq.config import Settings
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


def started() -> None:
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
        log_start("worker", settings, table)
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
        started()
        announce(f"chatq worker {worker.id} ready")
        try:
            await worker.run(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


def log_start(role: str, settings: Settings, table: ModelTable) -> None:
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
