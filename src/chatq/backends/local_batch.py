"""The local model with batched decoding: concurrent requests decoded together, in one batch.

A small model on a CPU spends each token on its weights; decoding several sequences in one
llama_decode reads each weight once for all of them. Requests are spread over one llama.cpp
context per core (single-threaded: a two-threaded decode stalls whenever another process
takes one of the cores), each context holding up to its share of `parallel` sequences in one
pool of KV cells (unified, so that sequences share the cells of a common start, such as the
chat template's system prompt). One thread per context loops: admit waiting requests (the
prompt is read as its own sequence, in chunks that share the step with the others' tokens),
one llama_decode for every active sequence's next token, one sample per sequence; a
finished or cancelled sequence keeps its cells for the next prompt that starts the same way.
The engine talks to llama.cpp through llama-cpp-python's low-level API (the `llama_cpp`
module's C functions) and borrows only the chat formatting of its high-level layer, so that
prompts are rendered exactly as `Llama` renders them, and samples as `Llama` does.

Greedy answers: one request alone answers as the contexts engine does; decoded together, a
near tie between two tokens may go the other way (llama.cpp's softmax sums over the other
sequences' masked cells too, in another order).

The loop's results reach the event loop through a concurrent Future and
loop.call_soon_threadsafe, as the contexts engine's (local.py) do.
"""

from __future__ import annotations

import asyncio
import codecs
import contextvars
import ctypes
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatq.backends.base import PermanentError, TextSink, TransientError
from chatq.backends.local import (
    Generated,
    answered,
    call_soon,
    load_exclusively,
    max_tokens_of,
    model_file,
    text_of,
)
from chatq.config import BackendConfig
from chatq.domain import JSON

log = logging.getLogger("chatq.backends.local")

# What llama-cpp-python's create_chat_completion samples with when the request says nothing.
_TEMPERATURE, _TOP_P, _TOP_K, _MIN_P = 0.2, 0.95, 40, 0.05
# Tokens one llama_decode takes at most: every sequence's next token plus prompt chunks.
_BATCH = 512


class LocalBatchBackend:
    """The `local` backend's batched engine (engine = "batch"); lanes: the contexts the
    sequences are spread over (default: one per core, each single-threaded)."""

    def __init__(self, config: BackendConfig, lanes: int | None = None) -> None:
        self.name = config.name
        self.model_path = model_file(config)
        self.context_size = config.context_size
        self.parallel = config.parallel
        cores = os.cpu_count() or 1
        self.lanes = max(1, min(lanes or cores, self.parallel))
        self.threads = max(1, cores // self.lanes)
        self._batcher: _Batcher | None = None
        self._starting = asyncio.Lock()
        self._closed = False
        self._running: set[_Job] = set()

    async def _started(self) -> _Batcher:
        """Load the model and start the engines' threads on first use, off the event loop."""
        async with self._starting:
            if self._closed:
                raise TransientError(f"{self.name} is closed")
            if self._batcher is None:
                self._batcher = await asyncio.to_thread(
                    load_exclusively,
                    lambda: _Batcher(
                        self.model_path, self.context_size, self.parallel, self.lanes, self.threads
                    ),
                )
            return self._batcher

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        batcher = await self._started()
        job = _Job(request, asyncio.get_running_loop(), on_text)
        self._running.add(job)
        batcher.submit(job)
        try:
            generated = await asyncio.wrap_future(job.future)
        except _Refused as exc:
            if exc.too_long:
                raise PermanentError(f"the prompt is too long for {self.name}: {exc}") from None
            raise PermanentError(f"{self.name} cannot run this request: {exc}") from None
        finally:
            # Done, failed or cancelled: the engine drops the sequence at its next step, and
            # no piece still on its way to the loop reaches on_text any more.
            job.stop.set()
            self._running.discard(job)
        if job.error is not None:
            raise job.error
        return answered(self.name, request_id, request, generated)

    async def aclose(self) -> None:
        async with self._starting:
            self._closed = True
            batcher, self._batcher = self._batcher, None
        for job in list(self._running):
            job.stop.set()
        if batcher is not None:
            # Returns once the threads have stopped (each at its next step) and llama.cpp's
            # memory is freed.
            await asyncio.to_thread(batcher.close)


class _Refused(Exception):
    """A request the model cannot run (its prompt too long, its messages not renderable)."""

    def __init__(self, message: str, *, too_long: bool = False) -> None:
        super().__init__(message)
        self.too_long = too_long


class _Job:
    """One call: its request, how its pieces reach the loop, and how it ends."""

    def __init__(
        self, request: JSON, loop: asyncio.AbstractEventLoop, on_text: TextSink | None
    ) -> None:
        self.request = request
        self.future: Future[Generated] = Future()
        self.stop = threading.Event()  # set on the loop's thread only
        self.error: Exception | None = None  # what on_text raised
        # The engine's log lines about this call are in the caller's context, as they would
        # be in a thread started by asyncio.to_thread.
        self.context = contextvars.copy_context()
        self._loop = loop
        self._on_text = on_text

    @property
    def streams(self) -> bool:
        return self._on_text is not None

    def send(self, piece: str) -> None:
        """From the engine's thread: hand one piece of text to on_text, on the loop."""
        call_soon(self._loop, lambda: self._deliver(piece))

    def _deliver(self, piece: str) -> None:
        if self.stop.is_set() or self._on_text is None:
            return
        try:
            self._on_text(piece)
        except Exception as exc:
            self.error = exc
            self.stop.set()

    def resolve(self, generated: Generated | None, error: BaseException | None = None) -> None:
        """From the engine's thread: the call's outcome, unless the caller gave up on it."""
        try:
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(generated)  # type: ignore[arg-type]
        except InvalidStateError:  # cancelled by the caller in the meantime
            pass


@dataclass(slots=True)
class _Sequence:
    """A job being answered in one of the context's sequences."""

    job: _Job
    seq_id: int
    sampler: Any
    prompt: list[int]
    max_tokens: int
    stops: list[str]
    fed: int = 0  # tokens of this sequence in the KV cache, reused ones included
    next_token: int | None = None  # sampled, to be fed at the next step
    history: list[int] = field(default_factory=list)  # the tokens in its KV cells, in order
    generated: int = 0  # tokens of the answer, the end-of-turn token not counted
    text: str = ""
    sent: int = 0  # characters of text handed out (streaming) or final so far
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("ignore"))

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.prompt)


class _Model:
    """The GGUF loaded once (its weights mapped), its vocabulary and its chat formatting,
    shared by every context (llama.cpp allows a model many contexts, each in its thread)."""

    def __init__(self, path: Path) -> None:
        import llama_cpp

        self.ll = llama_cpp
        # llama.cpp's log lines go through llama-cpp-python's logger, which prints them all
        # unless told otherwise; Llama(verbose=False) keeps only errors, and so do we.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(
            str(path).encode(), llama_cpp.llama_model_default_params()
        )
        if not self.model:
            raise TransientError(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.format = _chat_formatter(llama_cpp, self.model, self.vocab)
        self._pieces: dict[int, bytes] = {}

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode()
        room = len(data) + 8
        while True:
            buffer = (self.ll.llama_token * room)()
            count = self.ll.llama_tokenize(
                self.vocab, data, len(data), buffer, room, add_special, True
            )
            if count >= 0:
                return list(buffer[:count])
            room = -count

    def piece(self, token: int) -> bytes:
        """A token's bytes (special tokens give none, as in Llama's own output)."""
        piece = self._pieces.get(token)
        if piece is None:
            size = 32
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = self.ll.llama_token_to_piece(self.vocab, token, buffer, size, 0, False)
                if n >= 0:
                    break
                size = -n
            piece = self._pieces[token] = buffer.raw[:n]
        return piece

    def ends_turn(self, token: int) -> bool:
        return bool(self.ll.llama_vocab_is_eog(self.vocab, token))

    def free(self) -> None:
        self.ll.llama_model_free(self.model)


class _Batcher:
    """The waiting requests and the engines that take them, least loaded first."""

    def __init__(
        self, path: Path, context_size: int, parallel: int, lanes: int, threads: int
    ) -> None:
        self.model = _Model(path)
        self.lock = threading.Condition()
        self.waiting: deque[_Job] = deque()
        self.closing = False
        self.engines: list[_Engine] = []
        try:
            for lane in range(lanes):
                sequences = parallel // lanes + (1 if lane < parallel % lanes else 0)
                self.engines.append(_Engine(self, context_size, sequences, threads))
        except BaseException:
            for engine in self.engines:
                engine.free()
            self.model.free()
            raise
        for engine in self.engines:
            engine.start()

    def submit(self, job: _Job) -> None:
        with self.lock:
            if self.closing:
                job.resolve(Generated("", None, 0, 0, stopped=True))
                return
            self.waiting.append(job)
            self.lock.notify_all()

    def may_admit(self, engine: _Engine) -> bool:
        """Under the lock: whether engine takes the next waiting job. The least loaded
        engine does, so that two requests run on two cores rather than batched on one."""
        return bool(self.waiting) and all(
            engine.load <= other.load for other in self.engines if other is not engine
        )

    def close(self) -> None:
        """Stop the threads (they end every call as stopped) and free llama.cpp's memory."""
        with self.lock:
            self.closing = True
            waiting, self.waiting = list(self.waiting), deque()
            self.lock.notify_all()
        for engine in self.engines:
            engine.join()
        for job in waiting:
            job.resolve(Generated("", None, 0, 0, stopped=True))
        for engine in self.engines:
            engine.free()
        self.model.free()


class _Engine:
    """One llama.cpp context and the thread that decodes all its sequences together."""

    def __init__(self, batcher: _Batcher, context_size: int, sequences: int, threads: int) -> None:
        self._batcher = batcher
        self._model = batcher.model
        self._ll = ll = batcher.model.ll
        self.context_size = context_size
        params = ll.llama_context_default_params()
        params.n_ctx = context_size * sequences
        params.n_batch = _BATCH
        params.n_ubatch = _BATCH
        params.n_seq_max = sequences
        # One pool of cells for all the sequences, so that they can share the cells of a
        # common start (a chat template's system prompt). No overflow: each sequence holds
        # at most context_size positions, shared cells once.
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        # As Llama's default: flash attention would change the numbers, so greedy answers.
        params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = ll.llama_init_from_model(self._model.model, params)
        if not self._ctx:
            raise TransientError("llama.cpp could not create a context")
        self._memory = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(_BATCH, 0, 1)
        self.capacity = sequences
        self._free_ids = list(range(sequences - 1, -1, -1))
        # What each free sequence still holds in the KV cache: a new prompt that starts the
        # same way (the chat template's system prompt, a conversation's earlier turns) reads
        # only the rest, as Llama does with the one sequence of its context.
        self._cached: dict[int, list[int]] = {}
        self._active: list[_Sequence] = []
        self.load = 0  # sequences taken, under the batcher's lock
        self._thread = threading.Thread(target=self._loop, name="chatq-llama-batch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def free(self) -> None:
        self._ll.llama_batch_free(self._batch)
        self._ll.llama_free(self._ctx)

    # Everything below runs on the engine's thread.

    def _loop(self) -> None:
        batcher = self._batcher
        while True:
            with batcher.lock:
                while not (batcher.closing or self._active or self._admissible()):
                    batcher.lock.wait()
                if batcher.closing:
                    break
                admitted = []
                while self._admissible():
                    admitted.append(batcher.waiting.popleft())
                    self.load += 1
            try:
                for job in admitted:
                    self._admit(job)
                for sequence in [s for s in self._active if s.job.stop.is_set()]:
                    self._finish(sequence, None, stopped=True)
                if self._active:
                    self._step()
            except Exception:
                # A fault of ours must not end the thread, which would leave every call
                # waiting: the calls in flight fail (retryable), the next ones run.
                log.exception("the batch engine failed a step")
                self._fail_all(TransientError("the local model's batch engine failed"))
        for sequence in list(self._active):
            self._finish(sequence, None, stopped=True)

    def _admissible(self) -> bool:
        return self.load < self.capacity and self._batcher.may_admit(self)

    def _admit(self, job: _Job) -> None:
        if job.stop.is_set():  # cancelled while it waited for a sequence
            self._release(None)
            job.resolve(Generated("", None, 0, 0, stopped=True))
            return
        try:
            prompt, stops = self._prompt(job.request)
            if len(prompt) >= self.context_size:
                raise _Refused(
                    f"Requested tokens ({len(prompt)}) exceed context window of "
                    f"{self.context_size}",
                    too_long=True,
                )
            sampler = self._sampler(job.request)
        except Exception as exc:  # a template or a request llama.cpp cannot take
            self._release(None)
            error = exc if isinstance(exc, _Refused) else _Refused(str(exc))
            job.resolve(None, error)
            return
        seq_id, reused = self._sequence_for(prompt)
        wanted = max_tokens_of(job.request)
        self._active.append(
            _Sequence(
                job=job,
                seq_id=seq_id,
                sampler=sampler,
                prompt=prompt,
                # As llama.cpp's Llama: the answer ends where the context does.
                max_tokens=min(wanted, self.context_size - len(prompt)),
                stops=stops,
                fed=reused,
                history=prompt[:reused],
            )
        )

    def _sequence_for(self, prompt: list[int]) -> tuple[int, int]:
        """A free sequence for this prompt, and how many of its tokens are already in the
        KV cache: those it holds itself (the free sequence whose cached tokens start the
        most like it), or those another sequence of this context holds (its cells then
        count for both: llama.cpp shares them, it does not copy them)."""
        with self._batcher.lock:
            seq_id = max(
                self._free_ids, key=lambda s: _common_start(self._cached.get(s, []), prompt)
            )
            self._free_ids.remove(seq_id)
        # At least the prompt's last two tokens are read again: the last one's logits give
        # the first token of the answer, and llama.cpp computes a lone token's slightly
        # differently from one among others (another kernel), so that a prompt read whole
        # from the cache could answer otherwise than the same prompt read afresh.
        most = max(0, len(prompt) - 2)
        own = min(_common_start(self._cached.pop(seq_id, []), prompt), most)
        holders = [*self._cached.items(), *((a.seq_id, a.history) for a in self._active)]
        source, shared = max(
            ((s, min(_common_start(history, prompt), most)) for s, history in holders),
            key=lambda holder: holder[1],
            default=(seq_id, 0),
        )
        memory = self._memory
        if shared > own:
            self._ll.llama_memory_seq_rm(memory, seq_id, -1, -1)
            self._ll.llama_memory_seq_cp(memory, source, seq_id, 0, shared)
            return seq_id, shared
        reused = own
        if not self._ll.llama_memory_seq_rm(memory, seq_id, reused, -1):
            self._ll.llama_memory_seq_rm(memory, seq_id, -1, -1)
            reused = 0
        return seq_id, reused

    def _prompt(self, request: JSON) -> tuple[list[int], list[str]]:
        """The request's messages through the model's chat template, tokenized; and the
        stop strings (the request's and the template's)."""
        messages = [
            {"role": m["role"], "content": text_of(m.get("content"))} for m in request["messages"]
        ]
        result = self._model.format(messages=messages)
        tokens = self._model.tokenize(result.prompt, add_special=not result.added_special)
        stop = request.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)]
        if result.stop is not None:
            stops += [result.stop] if isinstance(result.stop, str) else list(result.stop)
        return tokens, [s for s in stops if s]

    def _sampler(self, request: JSON) -> Any:
        """The sampler chain llama-cpp-python's Llama builds for the same options."""
        ll = self._ll
        temperature = _number(request.get("temperature"), _TEMPERATURE)
        top_p = _number(request.get("top_p"), _TOP_P)
        seed = request.get("seed")
        seed = seed & 0xFFFFFFFF if isinstance(seed, int) else ll.LLAMA_DEFAULT_SEED
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if temperature == 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        else:
            if temperature > 0:
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(_TOP_K))
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(top_p, 1))
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(_MIN_P, 1))
                ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(temperature))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        return chain

    def _step(self) -> None:
        """One llama_decode: each generating sequence's last token, then prompt chunks."""
        batch, outputs, count = self._batch, [], 0

        def add(sequence: _Sequence, token: int, wants_logits: bool) -> None:
            nonlocal count
            batch.token[count] = token
            batch.pos[count] = sequence.fed
            batch.n_seq_id[count] = 1
            batch.seq_id[count][0] = sequence.seq_id
            batch.logits[count] = wants_logits
            if wants_logits:
                outputs.append((sequence, count))
            sequence.history.append(token)
            sequence.fed += 1
            count += 1

        for sequence in self._active:
            if sequence.next_token is not None:
                add(sequence, sequence.next_token, True)
                sequence.next_token = None
        for sequence in self._active:
            while sequence.prefilling and count < _BATCH:
                last = sequence.fed == len(sequence.prompt) - 1  # its logits give the answer
                add(sequence, sequence.prompt[sequence.fed], last)
        batch.n_tokens = count
        status = self._ll.llama_decode(self._ctx, batch)
        if status != 0:
            # 1: no room in the KV cache (cannot happen: each sequence has its own cells);
            # below 0: llama.cpp failed. Every sequence in the batch is lost with it.
            self._fail_all(TransientError(f"llama_decode failed ({status})"))
            return
        for sequence, index in outputs:
            token = self._ll.llama_sampler_sample(sequence.sampler, self._ctx, index)
            self._take(sequence, token)

    def _fail_all(self, error: TransientError) -> None:
        for sequence in list(self._active):
            sequence.history.clear()  # what the KV cache holds for it is unknown
            self._finish(sequence, error)

    def _take(self, sequence: _Sequence, token: int) -> None:
        """A sampled token: end of turn, or a piece of the answer (which may end it)."""
        if self._model.ends_turn(token):
            sequence.text += sequence.decoder.decode(b"", final=True)
            if not self._stopped_by_string(sequence):
                self._finish(sequence, "stop")
            return
        sequence.generated += 1
        last = sequence.generated >= sequence.max_tokens
        sequence.text += sequence.decoder.decode(self._model.piece(token), final=last)
        if self._stopped_by_string(sequence):
            return
        if last:
            self._finish(sequence, "length")
            return
        # Hand out what cannot be the start of a stop string.
        held = _held_back(sequence.text, sequence.sent, sequence.stops)
        if len(sequence.text) - held > sequence.sent:
            self._send(sequence, len(sequence.text) - held)
        sequence.next_token = token

    def _stopped_by_string(self, sequence: _Sequence) -> bool:
        # Text already handed out holds no stop string, nor the start of one: look after it.
        found = [
            at
            for at in (sequence.text.find(stop, sequence.sent) for stop in sequence.stops)
            if at >= 0
        ]
        if not found:
            return False
        sequence.text = sequence.text[: min(found)]
        self._finish(sequence, "stop")
        return True

    def _send(self, sequence: _Sequence, end: int) -> None:
        if sequence.job.streams and end > sequence.sent:
            sequence.job.send(sequence.text[sequence.sent : end])
        sequence.sent = end

    def _finish(
        self, sequence: _Sequence, reason: str | BaseException | None, stopped: bool = False
    ) -> None:
        """End a sequence: the job gets its outcome, the sequence's cells are free again."""
        self._active.remove(sequence)
        self._ll.llama_sampler_free(sequence.sampler)
        if not sequence.history:
            self._ll.llama_memory_seq_rm(self._memory, sequence.seq_id, -1, -1)
        # Its cells stay filled until another prompt takes the sequence: that prompt may
        # start the same way.
        self._cached[sequence.seq_id] = sequence.history
        self._release(sequence.seq_id)
        job = sequence.job
        if isinstance(reason, BaseException):
            job.resolve(None, reason)
            return
        if not stopped:
            self._send(sequence, len(sequence.text))
        else:
            job.context.run(log.info, "generation cancelled after %d token(s)", sequence.generated)
        job.resolve(
            Generated(
                sequence.text[: sequence.sent],
                reason if isinstance(reason, str) else None,
                len(sequence.prompt),
                sequence.generated,
                stopped=stopped,
            )
        )

    def _release(self, seq_id: int | None) -> None:
        with self._batcher.lock:
            if seq_id is not None:
                self._free_ids.append(seq_id)
            self.load -= 1
            # The balance between the engines has changed: another may take a job now.
            self._batcher.lock.notify_all()


def _common_start(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _held_back(text: str, sent: int, stops: list[str]) -> int:
    """How many characters at the end of text could be the start of a stop string."""
    held = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text) - sent), held, -1):
            if text.endswith(stop[:length]):
                held = length
                break
    return held


def _chat_formatter(ll: Any, model: Any, vocab: Any) -> Callable[..., Any]:
    """The chat formatter llama-cpp-python's Llama would pick for this model: a known
    template by name, else the GGUF's own template through Jinja2, else llama-2's."""
    from llama_cpp import llama_chat_format as chat

    template = ll.llama_model_chat_template(model, None)
    if not template:
        return chat.format_llama2  # type: ignore[no-any-return]
    template_text = template.decode()
    known: Callable[..., Any] | None = {
        "chatml": chat.format_chatml,
        "mistral-instruct": chat.format_mistral_instruct,
        "llama-3": chat.format_llama3,
    }.get(
        chat.guess_chat_format_from_gguf_metadata({"tokenizer.chat_template": template_text}) or ""
    )
    if known is not None:
        return known

    def text(token: int) -> str:
        return str(ll.llama_vocab_get_text(vocab, token).decode()) if token != -1 else ""

    eos, bos = ll.llama_vocab_eos(vocab), ll.llama_vocab_bos(vocab)
    formatter: Callable[..., Any] = chat.Jinja2ChatFormatter(
        template=template_text, eos_token=text(eos), bos_token=text(bos), stop_token_ids=[eos]
    )
    return formatter


def _number(value: object, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )
