"""The client's HTTP side: chatq's routes as async methods, the server's errors as exceptions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse

from chatq.retry import parse_retry_after

PATH = "/async/chat/completions"
TERMINAL = frozenset({"COMPLETED", "FAILED"})
LONG_POLL_S = 60  # the longest wait= the server takes
_RECONNECTS = 5  # a broken event stream is resumed this many times, with Last-Event-ID


class ServerError(Exception):
    """The server answered with an error: its HTTP status, error type and message, and when
    to try again if it said (Retry-After, in seconds)."""

    def __init__(
        self, status: int, kind: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{message} ({status} {kind})")
        self.status = status
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


class Unreachable(Exception):
    """No answer from the server: refused, timed out, or the connection broke."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # status, delta, done
    data: dict[str, Any]


class ChatqClient:
    """One server, one key; use as `async with ChatqClient(url, key) as client`."""

    def __init__(self, url: str, key: str | None, *, connections: int = 10) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(30, read=LONG_POLL_S + 30),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def __aenter__(self) -> ChatqClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def models(self) -> list[str]:
        """The model names the server lists (GET /v1/models), in its order."""
        body = await self._call("GET", "/v1/models")
        return [m["id"] for m in body.get("data", []) if isinstance(m, dict) and "id" in m]

    async def submit(
        self, body: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST a create body (wrapped or flat); the created object, or for an idempotency key
        already used, the existing one. The key goes as the Idempotency-Key header, which both
        body forms take."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        result: dict[str, Any] = await self._call("POST", PATH, json=body, headers=headers)
        return result

    async def submit_batch(self, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST up to 1,000 create bodies in one call; per item, the object or {"error": ...}."""
        body = await self._call("POST", f"{PATH}/batch", json={"requests": list(items)})
        results: list[dict[str, Any]] = body["results"]
        return results

    async def get(self, request_id: str, wait: float | None = None) -> dict[str, Any]:
        """The full object; with wait, as soon as it is terminal or after wait seconds."""
        params = {"wait": f"{wait:g}"} if wait else None
        result: dict[str, Any] = await self._call("GET", f"{PATH}/{request_id}", params=params)
        return result

    async def wait(self, request_id: str) -> dict[str, Any]:
        """The full object once terminal, long-polling as long as it takes."""
        while (job := await self.get(request_id, LONG_POLL_S))["status"] not in TERMINAL:
            pass
        return job

    async def submitted(self, request_id: str) -> dict[str, Any] | None:
        """The chat request as submitted (GET .../{id}/request); None where the server has no
        such route (before the dashboard's) or the request is gone."""
        try:
            body: dict[str, Any] = await self._call("GET", f"{PATH}/{request_id}/request")
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise
        request: dict[str, Any] | None = body.get("request")
        return request

    async def cancel(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"{PATH}/{request_id}/cancel")
        return result

    async def list(
        self, statuses: Sequence[str], model: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to limit summaries, newest first, following next_token as needed."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while len(found) < limit:
            params: list[tuple[str, str | int]] = [("limit", min(1000, limit - len(found)))]
            params += [("status", s) for s in statuses]
            if model:
                params.append(("model", model))
            if token:
                params.append(("next_token", token))
            page = await self._call("GET", PATH, params=params)
            found += page["requests"]
            token = page.get("next_token")
            if not token:
                break
        return found

    async def events(self, request_id: str) -> AsyncIterator[Event]:
        """The request's events until done; a broken stream is resumed where it broke."""
        last_id: str | None = None
        breaks = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with aconnect_sse(
                    self._http,
                    "GET",
                    f"{PATH}/{request_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(30, read=None),  # quiet while the request waits
                ) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                        raise _error(source.response)
                    async for sse in source.aiter_sse():
                        if sse.id:
                            last_id = sse.id
                        event = Event(sse.event, orjson.loads(sse.data) if sse.data else {})
                        yield event
                        if event.kind == "done":
                            return
            except httpx.TransportError as exc:
                breaks += 1
                if breaks > _RECONNECTS:
                    raise Unreachable(f"the event stream from {self.url} broke: {exc}") from exc
                continue
            # The stream ended without its done event (a proxy, a restart): resume it.
            breaks += 1
            if breaks > _RECONNECTS:
                raise Unreachable(f"the event stream from {self.url} ended before done")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {_what(exc)}") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response.json()


def _error(response: httpx.Response) -> ServerError:
    """The server's error, from Perplexity's shape, FastAPI's 422 detail, or the status."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        kind, message = str(error.get("type", "error")), str(error.get("message", ""))
        return ServerError(status, kind, message, retry_after)
    if isinstance(body, dict) and isinstance(body.get("detail"), list) and body["detail"]:
        first = body["detail"][0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        more = f" (and {len(body['detail']) - 1} more)" if len(body["detail"]) > 1 else ""
        return ServerError(status, "invalid_request", f"{where}: {first.get('msg')}{more}")
    reason = response.reason_phrase or f"HTTP {status}"
    return ServerError(status, "http_error", reason, retry_after)


def _what(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__
