"""A scrape: this process's metrics and the queue depth, in Prometheus' text format."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from chatq.domain import QueueDepth
from chatq.store import Store

log = logging.getLogger("chatq.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The queue depth is read from the store at most this often per process, whatever the
# number of scrapers: a scrape costs at most one cheap query.
DEPTH_CACHE_S = 5.0


class DepthCollector:
    """chatq_queue_depth and chatq_webhook_deliveries_pending, as last read from the store."""

    def __init__(
        self,
        store: Store,
        max_age_s: float = DEPTH_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.clock = clock
        self._depth: QueueDepth | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the depth again if the last reading is older than max_age_s. If the store
        cannot answer, the depth is left out of the scrape rather than shown stale."""
        async with self._lock:  # scrapes at once share one query
            if self.clock() - self._read_at < self.max_age_s:
                return
            try:
                self._depth = await self.store.queue_depth()
            except Exception:
                log.warning("metrics: could not read the queue depth", exc_info=True)
                self._depth = None
            self._read_at = self.clock()

    def collect(self) -> Iterator[Metric]:
        depth = self._depth
        if depth is None:
            return
        queue = GaugeMetricFamily(
            "chatq_queue_depth",
            "Requests waiting (CREATED) and being run (IN_PROGRESS), across every process; "
            f"read from the store at most every {self.max_age_s:g}s",
            labels=("status",),
        )
        queue.add_metric(("CREATED",), depth.created)
        queue.add_metric(("IN_PROGRESS",), depth.in_progress)
        yield queue
        yield GaugeMetricFamily(
            "chatq_webhook_deliveries_pending",
            "Webhook deliveries still to be made (due now or retrying later), across every process",
            value=depth.webhooks_pending,
        )


class Exposition:
    """What /metrics answers: prometheus_client's default registry (this process's chatq
    families, its process and garbage-collector metrics) and the queue depth."""

    def __init__(self, store: Store, depth_cache_s: float = DEPTH_CACHE_S) -> None:
        self.depth = DepthCollector(store, depth_cache_s)
        self._depth_registry = CollectorRegistry(auto_describe=False)
        self._depth_registry.register(self.depth)

    async def render(self) -> bytes:
        await self.depth.refresh()
        # The text format is a sequence of families, so two registries' texts join as one.
        return generate_latest(REGISTRY) + generate_latest(self._depth_registry)
