"""Any OpenAI-compatible upstream: POST {base_url}/chat/completions over a pooled client."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from chatq.backends.base import PermanentError, TransientError
from chatq.backends.normalize import MalformedCompletion, normalize_completion
from chatq.config import BackendConfig
from chatq.domain import JSON

_CONNECT_TIMEOUT_S = 10.0
_SNIPPET = 300
# Connections per httpcore pool: see _ShardedTransport.
_CONNECTIONS_PER_POOL = 4


class OpenAIBackend:
    def __init__(self, config: BackendConfig, transport: httpx.AsyncBaseTransport | None = None):
        assert config.base_url is not None  # the config validator guarantees it
        self.name = config.name
        self._upstream_model = config.upstream_model
        self._timeout_s = config.timeout_s
        headers = {}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=config.base_url,
            headers=headers,
            timeout=httpx.Timeout(
                config.timeout_s, connect=min(_CONNECT_TIMEOUT_S, config.timeout_s)
            ),
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
            ),
            transport=transport or _ShardedTransport(config.max_concurrency),
        )
        self._slots = asyncio.Semaphore(config.max_concurrency)

    async def complete(self, request_id: str, request: JSON) -> JSON:
        body = {k: v for k, v in request.items() if k != "stream"}
        if self._upstream_model:
            body["model"] = self._upstream_model
        async with self._slots:
            try:
                # httpx's timeouts bound each read; a slow drip needs a bound on the whole call.
                async with asyncio.timeout(self._timeout_s):
                    response = await self._client.post("chat/completions", json=body)
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise TransientError(
                    f"upstream {self.name}: no complete answer within {self._timeout_s:g}s "
                    f"({type(exc).__name__})"
                ) from exc
            except httpx.TransportError as exc:
                raise TransientError(f"upstream {self.name}: {type(exc).__name__}: {exc}") from exc
        return self._read(response, request_id, str(request.get("model", "")))

    def _read(self, response: httpx.Response, request_id: str, model: str) -> JSON:
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise TransientError(
                f"upstream {self.name}: HTTP {status}: {_error_text(response)}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise PermanentError(f"upstream {self.name}: HTTP {status}: {_error_text(response)}")
        try:
            raw = response.json()
        except ValueError:
            raise TransientError(
                f"upstream {self.name}: HTTP {status} with a body that is not JSON: "
                f"{response.text[:_SNIPPET]!r}"
            ) from None
        try:
            return normalize_completion(raw, request_id, model)
        except MalformedCompletion as exc:
            raise TransientError(f"upstream {self.name}: malformed completion: {exc}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


class _ShardedTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, split into pools of a few connections each.

    httpcore 1.0's pool walks all its connections on every request and every response, and
    for each idle one counts the idle ones again (encode/httpcore#1035): O(n^2) in the
    connections, per request. At max_concurrency 1,000 that costs far more CPU than the
    requests themselves. Here each request goes to a pool with a free connection slot (the
    most recently freed one, whose connection is warm), so that the walk stays a few
    connections long; limits, keep-alive and error mapping are httpx's own.
    """

    def __init__(self, connections: int) -> None:
        per_pool = min(connections, _CONNECTIONS_PER_POOL)
        # One TLS context for all the pools: each would otherwise load the CA bundle again.
        ssl_context = httpx.create_ssl_context(verify=True, trust_env=True)
        self._pools: list[httpx.AsyncHTTPTransport] = []
        # One entry per connection slot: the pool it belongs to. Used as a stack.
        self._free: list[httpx.AsyncHTTPTransport] = []
        for start in range(0, connections, per_pool):
            size = min(per_pool, connections - start)
            pool = httpx.AsyncHTTPTransport(
                verify=ssl_context,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            )
            self._pools.append(pool)
            self._free.extend([pool] * size)
        self._overflow = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._free:
            # More requests than connections (callers hold a semaphore, so not from chatq):
            # they queue inside a pool, as they would in one big pool.
            self._overflow = (self._overflow + 1) % len(self._pools)
            return await self._pools[self._overflow].handle_async_request(request)
        pool = self._free.pop()
        try:
            response = await pool.handle_async_request(request)
        except BaseException:
            self._free.append(pool)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, lambda: self._free.append(pool))
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that gives its connection slot back once closed (exactly once)."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def _error_text(response: httpx.Response) -> str:
    """The upstream's own error message when it gives one, else the start of its body."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:_SNIPPET].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.text[:_SNIPPET]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
