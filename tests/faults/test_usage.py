"""Usage under crashes and retries: a worker killed with SIGKILL mid-run, its jobs run again
by another worker after upstream errors, and the tokens and cost counted are exactly those
of the final results, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.acceptance.conftest import PATH, chat, write_config
from tests.fakes.upstream import FakeUpstream, Reply
from tests.faults.conftest import Deployment, all_completed
from tests.waiting import eventually

JOBS = 12
PRICE = {"prompt_per_1m": 3.0, "completion_per_1m": 5.0}


def completion(content: str, prompt: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": f"up-{content}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "upstream-llama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"done: {content}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


def test_usage_after_kill_9_and_retries_is_that_of_the_final_results(
    deployment: Deployment, upstream: FakeUpstream
) -> None:
    # Short leases, and room for the retries below before a job would fail.
    write_config(
        deployment.config,
        upstream.base_url,
        prices={"fake-model": PRICE},
        lease_s=1.0,
        grace_s=1.0,
        max_attempts=50,
        backoff_max_s=0.1,
    )
    contents = [f"usage {i}" for i in range(JOBS)]
    for i, content in enumerate(contents):
        # The first run of each job would report other numbers, had it finished.
        upstream.rule(content, Reply(delay_s=30, json_body=completion(content, 1000 + i, 1000)))
    api = deployment.start("api")
    doomed = deployment.start("worker")
    with api.client(deployment.key) as client:
        ids = [client.post(PATH, json=chat(c, "fake-model")).json()["id"] for c in contents]
        eventually(
            lambda: upstream.in_flight, lambda n: n == JOBS, what="every job in flight", timeout=30
        )
        doomed.stop(signal.SIGKILL)
        calls_before = Counter(c["messages"][-1]["content"] for c in upstream.calls)
        for i, content in enumerate(contents):
            # Half of them fail (transiently) for a while on the next worker, and are retried.
            upstream.rule(
                content,
                Reply(status=503) if i % 2 else Reply(json_body=completion(content, i + 1, 2 * i)),
            )
        deployment.start("worker")
        eventually(
            lambda: Counter(c["messages"][-1]["content"] for c in upstream.calls),
            lambda calls: all(calls[c] >= calls_before[c] + 2 for c in contents[1::2]),
            what="each of the failing jobs retried",
            timeout=30,
        )
        for i, content in enumerate(contents[1::2], start=0):
            n = 2 * i + 1
            upstream.rule(content, Reply(json_body=completion(content, n + 1, 2 * n)))
        final = all_completed(client, ids, "every job COMPLETED after the kill and the retries")
        time.sleep(1.5)  # a lease's length: a late duplicate would have been counted by now
        today = datetime.now(UTC).date()
        report = client.get(
            "/usage",
            params={"group_by": "model", "start": str(today - timedelta(1)), "end": str(today)},
        ).json()

    usages = [state["response"]["usage"] for state in final.values()]
    assert [u["prompt_tokens"] for u in usages] == [i + 1 for i in range(JOBS)]
    (counted,) = report["data"]
    assert counted == {
        "date": None,
        "model": "fake-model",
        "requests": JOBS,
        "prompt_tokens": sum(u["prompt_tokens"] for u in usages),
        "completion_tokens": sum(u["completion_tokens"] for u in usages),
        "total_tokens": sum(u["total_tokens"] for u in usages),
        "cost": counted["cost"],
    }
    priced = sum(u["prompt_tokens"] * 3.0 + u["completion_tokens"] * 5.0 for u in usages) / 1e6
    assert abs(counted["cost"] - priced) < 1e-12
    assert abs(counted["cost"] - sum(u["cost"]["total_cost"] for u in usages)) < 1e-12
    print(
        f"\nusage after kill -9 and retries: {upstream.call_count()} upstream calls for {JOBS} "
        f"jobs, {counted['total_tokens']} tokens counted, as in the final results"
    )
