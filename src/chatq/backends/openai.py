"""Any OpenAI-compatible upstream: POST {base_url}/chat/completions over pooled keep-alive
connections (aiohttp). With a text sink the call streams: the upstream is asked for
server-sent chat.completion.chunk events, each content delta goes to the sink as it arrives,
and the chunks are assembled into one whole chat completion."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from chatq.backends.base import PermanentError, TextSink, TransientError
from chatq.backends.normalize import MalformedCompletion, normalize_completion
from chatq.backends.sse import MalformedStream, SSEDecoder
from chatq.config import BackendConfig
from chatq.domain import JSON
from chatq.json_text import dumps
from chatq.retry import parse_retry_after

_CONNECT_TIMEOUT_S = 10.0
# An idle connection is dropped after this long: before the servers' own keep-alive timeouts
# (uvicorn's and so vLLM's is 5 s) close it under a request: httpx's default, as before.
_KEEPALIVE_S = 5.0
_SNIPPET = 300
# After [DONE] the body's end is normally in the same read or the next: wait this long for it
# so the connection can be reused, else drop the connection.
_DRAIN_S = 1.0
_STREAM_HEADERS = {"Accept": "text/event-stream"}


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
        # How chatq talks to the upstream is chatq's choice, not the client's: stream and
        # stream_options (which a provider refuses without stream) are never forwarded.
        body = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
        if self._upstream_model:
            body["model"] = self._upstream_model
        if on_text is not None:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        # orjson here: json.dumps was a tenth of a worker's CPU at 1,000 calls in flight.
        data = dumps(body)
        model = str(request.get("model", ""))
        session = self._open_session()
        streamed: JSON | None = None
        async with self._slots:
            try:
                # The whole call, body included: a slow drip must not outlive timeout_s.
                async with asyncio.timeout(self._timeout_s):
                    async with session.post(
                        self._url,
                        data=data.encode(),
                        proxy=self._proxy,
                        allow_redirects=False,
                        headers=_STREAM_HEADERS if on_text is not None else None,
                    ) as response:
                        if on_text is not None and _is_event_stream(response):
                            try:
                                streamed = await self._read_stream(response, on_text)
                            except BaseException:
                                # Cancelled, timed out or broken: close the connection now,
                                # so the upstream sees us go and stops generating; a half-read
                                # one must never go back to the keep-alive pool.
                                response.close()
                                raise
                        else:
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
                    f"({type(exc).__name__})",
                    kind="timeout",
                ) from exc
            except aiohttp.ClientError as exc:
                raise TransientError(
                    f"upstream {self.name}: {type(exc).__name__}: {exc}", kind="connection"
                ) from exc
        if streamed is not None:
            return self._normalize(streamed, request_id, model)
        completion = self._read(answer, request_id, model)
        if on_text is not None:
            # Asked to stream, the upstream answered with one whole completion (or an error,
            # raised above): its text is then the one piece.
            content = completion["choices"][0]["message"]["content"]
            if isinstance(content, str) and content:
                on_text(content)
        return completion

    async def _read_stream(self, response: aiohttp.ClientResponse, on_text: TextSink) -> JSON:
        """The upstream's chat.completion.chunk events, assembled into one chat completion."""
        decoder = SSEDecoder()
        chunks = _Chunks()
        done = False
        try:
            async for received in response.content.iter_any():
                for event in decoder.feed(received):
                    if event.data == "[DONE]":
                        done = True
                        break
                    for piece in chunks.add(self._chunk(event.data, chunks.count)):
                        on_text(piece)
                if done:
                    break
        except MalformedStream as exc:
            raise TransientError(
                f"upstream {self.name}: malformed event stream after {chunks.count} chunk(s): "
                f"{exc}",
                kind="invalid",
            ) from None
        except aiohttp.ClientError as exc:
            raise TransientError(
                f"upstream {self.name}: the stream broke off after {chunks.count} chunk(s): "
                f"{type(exc).__name__}: {exc}",
                kind="connection",
            ) from exc
        if done:
            await _drain(response)
        elif not chunks.finished:
            cut = " in the middle of an event" if decoder.pending else ""
            raise TransientError(
                f"upstream {self.name}: the stream ended{cut} after {chunks.count} chunk(s), "
                "without [DONE] or a finish_reason",
                kind="invalid",
            )
        return chunks.completion()

    def _chunk(self, data: str, count: int) -> JSON:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise TransientError(
                f"upstream {self.name}: malformed event after {count} chunk(s), not JSON: "
                f"{data[:_SNIPPET]!r}",
                kind="invalid",
            ) from None
        if not isinstance(chunk, dict):
            raise TransientError(
                f"upstream {self.name}: malformed event after {count} chunk(s), not a JSON "
                f"object: {data[:_SNIPPET]!r}",
                kind="invalid",
            )
        if "error" in chunk and "choices" not in chunk:
            # vLLM, OpenAI and others report a failure mid-stream as an error event.
            raise TransientError(
                f"upstream {self.name}: error in the stream after {count} chunk(s): "
                f"{_error_message(chunk) or data[:_SNIPPET]}",
                kind="invalid",
            )
        return chunk

    def _normalize(self, raw: Any, request_id: str, model: str) -> JSON:
        try:
            return normalize_completion(raw, request_id, model)
        except MalformedCompletion as exc:
            raise TransientError(
                f"upstream {self.name}: malformed completion: {exc}", kind="invalid"
            ) from None

    def _read(self, answer: _Answer, request_id: str, model: str) -> JSON:
        status = answer.status
        if status in (408, 429) or status >= 500:
            raise TransientError(
                f"upstream {self.name}: HTTP {status}: {_error_text(answer)}",
                retry_after=parse_retry_after(answer.retry_after),
                kind=f"{status // 100}xx",
            )
        if status >= 400:
            raise PermanentError(f"upstream {self.name}: HTTP {status}: {_error_text(answer)}")
        try:
            raw = json.loads(answer.body)
        except ValueError:
            raise TransientError(
                f"upstream {self.name}: HTTP {status} with a body that is not JSON: "
                f"{answer.text()[:_SNIPPET]!r}",
                kind="invalid" if 200 <= status < 300 else f"{status // 100}xx",
            ) from None
        return self._normalize(raw, request_id, model)

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


class _Chunks:
    """chat.completion.chunk objects added up into one chat completion: per choice the content
    deltas concatenated (and any other text delta, such as reasoning_content), the role and
    the finish_reason; the usage from the chunk that carries it; every other top-level field
    (id, model, created, citations, search_results, ...) as the last chunk that sent it."""

    def __init__(self) -> None:
        self.count = 0
        self._top: JSON = {}
        self._usage: Any = None
        self._choices: dict[int, _Choice] = {}

    def add(self, chunk: JSON) -> list[str]:
        """Take one chunk; return the content pieces it adds to the first choice."""
        self.count += 1
        for key, value in chunk.items():
            if key == "usage":
                if isinstance(value, dict):
                    self._usage = value
            elif key not in ("choices", "object") and value is not None:
                self._top[key] = value
        pieces: list[str] = []
        choices = chunk.get("choices")
        for position, raw in enumerate(choices if isinstance(choices, list) else []):
            if not isinstance(raw, dict):
                continue
            index = raw["index"] if isinstance(raw.get("index"), int) else position
            choice = self._choices.setdefault(index, _Choice())
            piece = choice.add(raw)
            if piece and index == 0:
                pieces.append(piece)
        return pieces

    @property
    def finished(self) -> bool:
        """Every choice has its finish_reason (and there is one)."""
        return bool(self._choices) and all(c.finish_reason for c in self._choices.values())

    def completion(self) -> JSON:
        completion: JSON = {
            **self._top,
            "object": "chat.completion",
            "choices": [c.whole(i) for i, c in sorted(self._choices.items())],
        }
        if self._usage is not None:
            completion["usage"] = self._usage
        return completion


class _Choice:
    def __init__(self) -> None:
        self.role: str | None = None
        self.text: dict[str, list[str]] = {}  # content and any other text field of the deltas
        self.finish_reason: str | None = None

    def add(self, raw: JSON) -> str:
        """Take one chunk's choice; return its content piece."""
        delta = raw.get("delta")
        if isinstance(raw.get("finish_reason"), str):
            self.finish_reason = raw["finish_reason"]
        if not isinstance(delta, dict):
            return ""
        if isinstance(delta.get("role"), str):
            self.role = delta["role"]
        for key, value in delta.items():
            if key != "role" and isinstance(value, str):
                self.text.setdefault(key, []).append(value)
        content = delta.get("content")
        return content if isinstance(content, str) else ""

    def whole(self, index: int) -> JSON:
        message: JSON = {"role": self.role or "assistant", "content": ""}
        message.update({key: "".join(parts) for key, parts in self.text.items()})
        return {"index": index, "message": message, "finish_reason": self.finish_reason}


def _is_event_stream(response: aiohttp.ClientResponse) -> bool:
    """A 2xx event stream: anything else (an error, a whole JSON answer) is read as a body."""
    return 200 <= response.status < 300 and response.content_type == "text/event-stream"


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read what follows [DONE] (the body's end) so that the connection can be kept alive;
    if it does not come soon, close the connection instead."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(_DRAIN_S):
            while await response.content.readany():
                pass
    if not response.content.at_eof():
        response.close()


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
    message = _error_message(body)
    return answer.text()[:_SNIPPET] if message is None else message


def _error_message(body: Any) -> str | None:
    """The message of an error object as OpenAI-compatible servers write it, if any."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return None
