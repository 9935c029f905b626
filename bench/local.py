"""The local model through chatq's whole async path, against llama-cpp called directly; and
chatq's two local engines side by side at 8 concurrent requests.

Both sides run the same prompts (greedy, fixed max_tokens) in the same run. Direct: the
fastest way found to call llama-cpp-python on this machine without batching, one
single-threaded context per core, each serving one prompt at a time. chatq: `chatq serve`
with its local backend on each engine (`contexts`: the same as direct; `batch`: concurrent
requests decoded together); every prompt is submitted over HTTP at once, and the clock stops
when the last one is COMPLETED. The sides alternate run by run. Figures: requests/s and
generated tokens/s, median of --runs; ratio = chatq / direct.

The second table calls the two engines in process (the backend's run(), no HTTP, no store):
8 requests at once (aggregate generated tokens/s) and one request alone (seconds, the median
of 3 prompts), the engines alternating run by run. The third compares two ways of sharing
llama.cpp without batching: one context behind a lock (all cores in it) or a pool.

    python bench/local.py          # about 4 minutes; --quick for a smoke run
"""

from __future__ import annotations

import asyncio
import os
import queue
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from common import PATH, arguments, chatq_server, database_with_key, row, table
from llama_cpp import Llama

from chatq.backends.base import Backend
from chatq.backends.local import LocalBackend, smollm2_path
from chatq.backends.local_batch import LocalBatchBackend
from chatq.config import BackendConfig

ENGINES = ("contexts", "batch")

TOPICS = [
    "the sea",
    "a cat",
    "mountains",
    "coffee",
    "trains",
    "the moon",
    "rain",
    "bread",
    "chess",
    "music",
    "winter",
    "bees",
    "rivers",
    "clocks",
    "paper",
    "salt",
]


def prompts(count: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "user", "content": f"Write one sentence about {TOPICS[i % len(TOPICS)]}."}]
        for i in range(count)
    ]


def direct(
    messages: list[list[dict[str, str]]], max_tokens: int, contexts: int, threads: int
) -> tuple[float, int]:
    """(seconds, generated tokens) for all prompts on a pool of contexts."""
    path = str(smollm2_path())
    free: queue.Queue[Llama] = queue.Queue()
    for _ in range(contexts):
        free.put(
            Llama(
                model_path=path,
                n_ctx=2048,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        )

    def one(message: list[dict[str, str]]) -> int:
        llama = free.get()
        try:
            out = llama.create_chat_completion(
                messages=message,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=0,
                seed=1,
            )
            return int(out["usage"]["completion_tokens"])  # type: ignore[index]
        finally:
            free.put(llama)

    one(messages[0])  # warm up, as chatq's pool is warm after its first request
    started = time.perf_counter()
    with ThreadPoolExecutor(contexts) as pool:
        tokens = sum(pool.map(one, messages))
    elapsed = time.perf_counter() - started
    while not free.empty():
        free.get().close()
    return elapsed, tokens


def through_chatq(
    messages: list[list[dict[str, str]]], max_tokens: int, engine: str
) -> tuple[float, int]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        database_with_key("sqlite", Path(tmp)) as (url, key),
        chatq_server("serve", url, "--config", str(local_config(Path(tmp), engine))) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client,
    ):
        warm = {"model": "smollm2", "messages": messages[0], "max_tokens": max_tokens}
        wait_all(client, [client.post(PATH, json={"request": warm}).json()["id"]])
        started = time.perf_counter()
        ids = [
            client.post(
                PATH,
                json={
                    "request": {
                        "model": "smollm2",
                        "messages": m,
                        "max_tokens": max_tokens,
                        "temperature": 0,
                        "seed": 1,
                    }
                },
            ).json()["id"]
            for m in messages
        ]
        wait_all(client, ids)
        elapsed = time.perf_counter() - started
        return elapsed, generated_tokens(client, ids)


def local_config(directory: Path, engine: str) -> Path:
    """A config file serving smollm2 on the given engine (the rest as without a file)."""
    path = directory / "chatq.toml"
    path.write_text(
        f'[[backends]]\nname = "smollm2"\ntype = "local"\nmodels = ["smollm2"]\n'
        f'engine = "{engine}"\n'
    )
    return path


def in_process(
    engine: str,
    together: list[list[dict[str, str]]],
    alone: list[list[dict[str, str]]],
    max_tokens: int,
) -> tuple[float, float]:
    """(aggregate generated tokens/s for all of together at once, median seconds of one
    request alone) on one engine, called in this process."""
    config = BackendConfig(name="smollm2", type="local", models=("smollm2",), engine=engine)  # type: ignore[arg-type]
    backend: Backend = LocalBackend(config) if engine == "contexts" else LocalBatchBackend(config)

    def ask(message: list[dict[str, str]]) -> dict[str, object]:
        return {"model": "smollm2", "messages": message, "max_tokens": max_tokens, "temperature": 0}

    async def measure() -> tuple[float, float]:
        try:
            await backend.run("warm", ask(together[0]))  # loads the model, as a warm server
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(backend.run(str(i), ask(m)) for i, m in enumerate(together))
            )
            elapsed = time.perf_counter() - started
            tokens = sum(a["usage"]["completion_tokens"] for a in answers)
            single = []
            for message in alone:
                started = time.perf_counter()
                await backend.run("alone", ask(message))
                single.append(time.perf_counter() - started)
            return tokens / elapsed, statistics.median(single)
        finally:
            await backend.aclose()

    return asyncio.run(measure())


def wait_all(client: httpx.Client, ids: list[str]) -> None:
    """Wait until every id is COMPLETED.

    One list call every 20 ms: the client shares the cores with the model, so it must not
    load the server more than a real client would."""
    deadline = time.monotonic() + 600
    while True:
        listed = client.get(PATH, params={"limit": 1000}).json()["requests"]
        states = {r["id"]: r["status"] for r in listed if r["id"] in ids}
        if "FAILED" in states.values():
            raise RuntimeError(f"a request failed: {states}")
        if len(states) == len(ids) and set(states.values()) == {"COMPLETED"}:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"requests did not complete: {states}")
        time.sleep(0.02)


def generated_tokens(client: httpx.Client, ids: list[str]) -> int:
    return sum(
        client.get(f"{PATH}/{i}").json()["response"]["usage"]["completion_tokens"] for i in ids
    )


def main() -> int:
    parser = arguments(__doc__, "1 run of 2 prompts: a smoke test", stores=False)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrent", type=int, default=8)
    args = parser.parse_args()
    runs, count = (1, 2) if args.quick else (args.runs, args.prompts)
    concurrent = 2 if args.quick else args.concurrent
    messages = prompts(count)
    cores = os.cpu_count() or 1

    table("path", "requests/s", "generated tokens/s")
    bare: list[tuple[float, int]] = []
    ours: dict[str, list[tuple[float, int]]] = {engine: [] for engine in ENGINES}
    for _ in range(runs):  # interleaved, so that a drift of the machine falls on every side
        bare.append(direct(messages, args.max_tokens, cores, 1))
        for engine in ENGINES:
            ours[engine].append(through_chatq(messages, args.max_tokens, engine))

    def medians(samples: list[tuple[float, int]]) -> tuple[float, float]:
        return (
            statistics.median(count / s for s, _ in samples),
            statistics.median(t / s for s, t in samples),
        )

    d_rps, d_tps = medians(bare)
    row("llama-cpp direct", f"{d_rps:.2f}", f"{d_tps:.1f}")
    for engine in ENGINES:
        rps, tps = medians(ours[engine])
        row(f"chatq submit -> COMPLETED, engine {engine}", f"{rps:.2f}", f"{tps:.1f}")
    for engine in ENGINES:
        rps, tps = medians(ours[engine])
        row(f"ratio chatq ({engine}) / direct", f"{rps / d_rps:.2f}", f"{tps / d_tps:.2f}")
    print()

    together, alone = prompts(concurrent), prompts(count + 3)[count:]
    table(
        f"engine, in process ({concurrent} at once; one alone)",
        "aggregate generated tokens/s",
        "one request alone, s",
    )
    samples: dict[str, list[tuple[float, float]]] = {engine: [] for engine in ENGINES}
    for run in range(runs):  # alternating, and which engine goes first too
        for engine in ENGINES if run % 2 == 0 else ENGINES[::-1]:
            samples[engine].append(in_process(engine, together, alone, args.max_tokens))
    figures = {
        engine: (
            statistics.median(t for t, _ in samples[engine]),
            statistics.median(s for _, s in samples[engine]),
        )
        for engine in ENGINES
    }
    for engine, (tps, single) in figures.items():
        spread = ", ".join(f"{t:.0f}" for t, _ in samples[engine])
        row(f"{engine} (runs: {spread} tokens/s)", f"{tps:.1f}", f"{single:.3f}")
    (c_tps, c_single), (b_tps, b_single) = figures.values()
    row("ratio batch / contexts", f"{b_tps / c_tps:.2f}", f"{b_single / c_single:.2f}")
    print()

    table("sharing llama.cpp between concurrent requests, no batching", "generated tokens/s")
    for name, contexts, threads in (
        (f"1 context, {cores} threads, behind a lock", 1, cores),
        (f"{cores} contexts, 1 thread each (the contexts engine)", cores, 1),
    ):
        shared = [direct(messages, args.max_tokens, contexts, threads) for _ in range(runs)]
        row(name, f"{statistics.median(t / s for s, t in shared):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
