"""GET /metrics for a worker alone (`chatq worker --metrics-port N`): a small aiohttp server,
on the worker's event loop, that answers what `chatq serve`'s /metrics would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from chatq.config import ConfigError
from chatq.keys import hash_secret
from chatq.metrics.exposition import CONTENT_TYPE, Exposition
from chatq.store import Store

_MAX_KEY_CHARS = 256


@asynccontextmanager
async def metrics_server(
    store: Store, host: str, port: int, *, require_key: bool
) -> AsyncIterator[str]:
    """Serve GET /metrics on host:port while the block runs; yields its URL (with port 0,
    the port picked)."""
    exposition = Exposition(store)

    async def scrape(request: web.Request) -> web.StreamResponse:
        if require_key and not await _valid_key(store, request.headers.get("Authorization", "")):
            return web.json_response(
                {
                    "error": {
                        "message": "/metrics needs a valid API key: send 'Authorization: "
                        "Bearer <api key>'",
                        "type": "authentication_error",
                        "code": 401,
                    }
                },
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return web.Response(body=await exposition.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}") from None
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{_url_host(bound_host)}:{bound_port}/metrics"
    finally:
        await runner.cleanup()


async def _valid_key(store: Store, authorization: str) -> bool:
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key or len(key) > _MAX_KEY_CHARS or not key.isascii():
        return False
    return await store.key_holder(hash_secret(key)) is not None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
