"""Any OpenAI-compatible upstream: POST {base_url}/chat/completions over a pooled client."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx

from chatq.backends.base import PermanentError, TransientError
from chatq.backends.normalize import MalformedCompletion, normalize_completion
from chatq.config import BackendConfig
from chatq.domain import JSON

_CONNECT_TIMEOUT_S = 10.0
_SNIPPET = 300


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
            transport=transport,
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
