"""The queue depth in a scrape: read from the store at most every max_age_s, however many
scrapes come; left out (not shown stale) when the store cannot answer. And every metric is
documented in docs/metrics.md, and the Grafana dashboard uses only metrics that exist."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest

from chatq import metrics
from chatq.domain import QueueDepth
from chatq.metrics.exposition import DepthCollector
from chatq.store import Store, StoreUnavailable
from tests.scrape import Samples, parse, value

DOCS = Path(__file__).parents[2] / "docs"


class CountingStore:
    """Answers queue_depth with the next of its depths (or raises), counting the calls."""

    def __init__(self, *depths: QueueDepth | Exception) -> None:
        self.depths = list(depths)
        self.calls = 0

    async def queue_depth(self) -> QueueDepth:
        self.calls += 1
        await asyncio.sleep(0.01)  # scrapes at once overlap here
        answer = self.depths.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rendered(collector: DepthCollector) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return parse(generate_latest(registry).decode())


async def test_the_depth_is_read_once_per_max_age_however_many_scrape() -> None:
    store = CountingStore(QueueDepth(7, 2, 1), QueueDepth(0, 1, 0))
    clock = Clock()
    collector = DepthCollector(cast(Store, store), max_age_s=5, clock=clock)
    await asyncio.gather(*(collector.refresh() for _ in range(10)))
    clock.now += 4.9
    await collector.refresh()
    assert store.calls == 1
    first = rendered(collector)
    assert value(first, "chatq_queue_depth", {"status": "CREATED"}) == 7
    assert value(first, "chatq_queue_depth", {"status": "IN_PROGRESS"}) == 2
    assert value(first, "chatq_webhook_deliveries_pending") == 1
    clock.now += 0.2
    await collector.refresh()
    assert store.calls == 2
    assert value(rendered(collector), "chatq_queue_depth", {"status": "CREATED"}) == 0


async def test_a_depth_the_store_cannot_give_is_left_out() -> None:
    store = CountingStore(QueueDepth(3, 0, 0), StoreUnavailable("down"))
    clock = Clock()
    collector = DepthCollector(cast(Store, store), max_age_s=5, clock=clock)
    await collector.refresh()
    assert rendered(collector)
    clock.now += 6
    await collector.refresh()
    assert rendered(collector) == {}


async def test_every_metric_is_documented_and_the_dashboard_uses_only_those() -> None:
    collector = DepthCollector(cast(Store, CountingStore(QueueDepth(0, 0, 0))))
    await collector.refresh()
    exposed = {f.name for f in metrics.FAMILIES} | {f.name for f in collector.collect()}
    assert exposed == _documented()

    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for expression in expressions
        for name in re.findall(r"chatq_\w+", expression)
    }
    assert used == exposed, "the dashboard shows every metric, and only those"


def _documented() -> set[str]:
    text = (DOCS / "metrics.md").read_text()
    return set(re.findall(r"^\| `(chatq_\w+)` \|", text, flags=re.MULTILINE))
