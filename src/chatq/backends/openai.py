"""Any OpenAI-compatible upstream: POST {base_url}/chat/completions over pooled keep-alive
connections (aiohttp)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from chatq.backends.base import PermanentError, TextSink, TransientError
from chatq.backends.normalize import MalformedCompletion, normalize_completion
from chatq.config import BackendConfig
from chatq.domain import JSON

_CONNECT_TIMEOUT_S = 10.0
# An idle connection is dropped after this long: before the servers' own keep-alive timeouts
# (uvicorn's and so vLLM's is 5 s) close it under a request: httpx's default, as before.
_KEEPALIVE_S = 5.0
_SNIPPET = 300


class OpenAIBackend:
    def __init__(self, config: BackendConfig) -> None:
        assert config.base_url is not None  # the config validator guarantees it
        self.name = config.name
        self._upstream_model = config.upstream_model
        self._timeout_s = config.timeout_s
        self._max_concurrency = config.max_concurrency
        self._url = URL(f"{config.base_url.rstrip('/')}/chat/completions")
        self._headers = {"Content-Type": "application/json"}
        if config.api_key is not None:
            self._headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._slots = asyncio.Semaphore(config.max_concurrency)
        # Made on first use: aiohttp binds a session to the running event loop, and backends
        # are built before one runs (BackendPool.build).
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        # No await between the test and the assignment: concurrent first calls share a session.
        if self._session is None:
            if self._closed:
                raise RuntimeError(f"backend {self.name}: used after aclose()")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_concurrency, keepalive_timeout=_KEEPALIVE_S
                ),
                headers=self._headers,
                # The connect timeout covers DNS, TCP and TLS (and a wait for a free connection,
                # which the semaphore makes none); run() bounds the whole call.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=min(_CONNECT_TIMEOUT_S, self._timeout_s)
                ),
            )
            # Passed per call: ClientSession(proxy=) only came in aiohttp 3.11 (we allow 3.9).
            self._proxy = _environment_proxy(self._url)
        return self._session

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        body = {k: v for k, v in request.items() if k != "stream"}
        if self._upstream_model:
            body["model"] = self._upstream_model
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        session = self._open_session()
        async with self._slots:
            try:
                # The whole call, body included: a slow drip must not outlive timeout_s.
                async with asyncio.timeout(self._timeout_s):
                    async with session.post(
                        self._url, data=data.encode(), proxy=self._proxy, allow_redirects=False
                    ) as response:
                        answer = _Answer(
                            status=response.status,
                            reason=response.reason or "",
                            retry_after=response.headers.get("Retry-After"),
                            charset=response.charset,
                            body=await response.read(),
                        )
            except TimeoutError as exc:  # aiohttp's own timeout errors are TimeoutErrors too
                raise TransientError(
                    f"upstream {self.name}: no complete answer within {self._timeout_s:g}s "
                    f"({type(exc).__name__})"
                ) from exc
            except aiohttp.ClientError as exc:
                raise TransientError(f"upstream {self.name}: {type(exc).__name__}: {exc}") from exc
        return self._read(answer, request_id, str(request.get("model", "")))

    def _read(self, answer: _Answer, request_id: str, model: str) -> JSON:
        status = answer.status
        if status in (408, 429) or status >= 500:
            raise TransientError(
                f"upstream {self.name}: HTTP {status}: {_error_text(answer)}",
                retry_after=parse_retry_after(answer.retry_after),
            )
        if status >= 400:
            raise PermanentError(f"upstream {self.name}: HTTP {status}: {_error_text(answer)}")
        try:
            raw = json.loads(answer.body)
        except ValueError:
            raise TransientError(
                f"upstream {self.name}: HTTP {status} with a body that is not JSON: "
                f"{answer.text()[:_SNIPPET]!r}"
            ) from None
        try:
            return normalize_completion(raw, request_id, model)
        except MalformedCompletion as exc:
            raise TransientError(f"upstream {self.name}: malformed completion: {exc}") from None

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()  # and its connector, which it owns


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the upstream said, read in full before its connection went back to the pool."""

    status: int
    reason: str
    retry_after: str | None
    charset: str | None
    body: bytes

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


def _environment_proxy(url: URL) -> str | None:
    """The proxy that HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY name for url, if any.

    Looked up once per backend: aiohttp's trust_env would look it up (and read ~/.netrc) in a
    thread on every call."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _error_text(answer: _Answer) -> str:
    """The upstream's own error message when it gives one, else the start of its body."""
    try:
        body: Any = json.loads(answer.body)
    except ValueError:
        return answer.text()[:_SNIPPET].strip() or answer.reason
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return answer.text()[:_SNIPPET]


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
