"""The local model through chatq's whole async path, against llama-cpp called directly.

Both sides run the same prompts (greedy, fixed max_tokens) in the same run. Direct: the
fastest way found to call llama-cpp-python on this machine, one single-threaded context per
core, each serving one prompt at a time. chatq: `chatq serve` with its default local backend
(which does the same); every prompt is submitted over HTTP at once, and the clock stops when
the last one is COMPLETED. The two sides alternate run by run. Figures: requests/s and
generated tokens/s, median of --runs; ratio = chatq / direct.

A second table compares the two ways of sharing llama.cpp between concurrent requests that
chatq could use: one context behind a lock (all cores in it) or a pool of contexts.

    python bench/local.py          # about 2 minutes; --quick for a smoke run
"""

from __future__ import annotations

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

from chatq.backends.local import smollm2_path

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


def through_chatq(messages: list[list[dict[str, str]]], max_tokens: int) -> tuple[float, int]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        database_with_key("sqlite", Path(tmp)) as (url, key),
        chatq_server("serve", url) as server,
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
    args = parser.parse_args()
    runs, count = (1, 2) if args.quick else (args.runs, args.prompts)
    messages = prompts(count)
    cores = os.cpu_count() or 1

    table("path", "requests/s", "generated tokens/s")
    ours, bare = [], []
    for _ in range(runs):  # interleaved, so that a drift of the machine falls on both sides
        bare.append(direct(messages, args.max_tokens, cores, 1))
        ours.append(through_chatq(messages, args.max_tokens))
    rows = {}
    for name, samples in (("llama-cpp direct", bare), ("chatq submit -> COMPLETED", ours)):
        rps = statistics.median(count / s for s, _ in samples)
        tps = statistics.median(t / s for s, t in samples)
        rows[name] = (rps, tps)
        row(name, f"{rps:.2f}", f"{tps:.1f}")
    (d_rps, d_tps), (c_rps, c_tps) = rows.values()
    row("ratio chatq / direct", f"{c_rps / d_rps:.2f}", f"{c_tps / d_tps:.2f}")
    print()

    table("sharing llama.cpp between concurrent requests", "generated tokens/s")
    for name, contexts, threads in (
        (f"1 context, {cores} threads, behind a lock", 1, cores),
        (f"{cores} contexts, 1 thread each (chatq's choice)", cores, 1),
    ):
        samples = [direct(messages, args.max_tokens, contexts, threads) for _ in range(runs)]
        row(name, f"{statistics.median(t / s for s, t in samples):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
