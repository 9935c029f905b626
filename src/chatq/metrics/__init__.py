"""chatq's Prometheus metrics: every family a process counts (docs/metrics.md lists them).

One set per process, in prometheus_client's default registry beside its process and
garbage-collector metrics; Prometheus scrapes each process (`chatq serve` and `chatq api` on
their /metrics, a worker alone on --metrics-port). No label is ever an owner, a key or a
request id: models are labelled as the model table names them (a model matched by a glob is
labelled with the glob), so the number of series stays bounded by the config.
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from chatq.domain import DeliveryStatus
from chatq.metrics.core import Counters, FamiliesCollector, Gauges, Histograms

# Seconds. HTTP requests include long-polls (?wait=, up to 60 s) and event streams.
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
_RUN_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

HTTP_DURATION = Histograms(
    "chatq_http_request_duration_seconds",
    "HTTP requests by route template, method and status, until the response ended",
    ("route", "method", "status"),
    _HTTP_BUCKETS,
)
JOBS = Counters(
    "chatq_jobs_total",
    "Jobs a worker of this process ended, by model and outcome "
    "(completed, failed, cancelled, lost: its result could not be recorded)",
    ("model", "outcome"),
)
QUEUE_WAIT = Histograms(
    "chatq_job_queue_wait_seconds",
    "From submit to the claim that ran the job, by model",
    ("model",),
    _WAIT_BUCKETS,
)
RUN_TIME = Histograms(
    "chatq_job_run_seconds",
    "From claim to the recorded result, retries included, by model",
    ("model",),
    _RUN_BUCKETS,
)
UPSTREAM_CALLS = Counters(
    "chatq_upstream_calls_total",
    "Backend calls by backend and class (2xx, 4xx, 5xx, timeout, connection, invalid, other)",
    ("backend", "class"),
)
UPSTREAM_RETRIES = Counters(
    "chatq_upstream_retries_total",
    "Backend calls retried after a transient error, by backend",
    ("backend",),
)
UPSTREAM_IN_FLIGHT = Gauges(
    "chatq_upstream_in_flight",
    "Backend calls in flight, by backend",
    ("backend",),
)
WEBHOOK_DELIVERIES = Counters(
    "chatq_webhook_deliveries_total",
    "Webhook delivery attempts recorded, by outcome (delivered, retry, failed: given up)",
    ("outcome",),
)
LEASES_EXPIRED = Counters(
    "chatq_leases_expired_total",
    "Jobs whose worker was lost, found by this process: requeued, or failed after max_deliveries",
    ("action",),
)

WEBHOOK_OUTCOMES = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.PENDING: "retry",
    DeliveryStatus.FAILED: "failed",
}

FAMILIES = (
    HTTP_DURATION,
    JOBS,
    QUEUE_WAIT,
    RUN_TIME,
    UPSTREAM_CALLS,
    UPSTREAM_RETRIES,
    UPSTREAM_IN_FLIGHT,
    WEBHOOK_DELIVERIES,
    LEASES_EXPIRED,
)
REGISTRY.register(FamiliesCollector(FAMILIES))


def declare_worker_series(backends: list[str]) -> None:
    """Series a worker has from its start, at zero, so that rate() sees their first rise."""
    for backend in backends:
        backend_series(backend)
    for outcome in WEBHOOK_OUTCOMES.values():
        WEBHOOK_DELIVERIES.labels(outcome)
    for action in ("requeued", "failed"):
        LEASES_EXPIRED.labels(action)


class ModelSeries:
    """The job series of one model label, looked up once for all its jobs."""

    __slots__ = ("cancelled", "completed", "failed", "lost", "queue_wait", "run_time")

    def __init__(self, model: str) -> None:
        self.completed = JOBS.labels(model, "completed")
        self.failed = JOBS.labels(model, "failed")
        self.cancelled = JOBS.labels(model, "cancelled")
        self.lost = JOBS.labels(model, "lost")
        self.queue_wait = QUEUE_WAIT.labels(model)
        self.run_time = RUN_TIME.labels(model)


class BackendSeries:
    """The upstream series of one backend, looked up once for all its calls."""

    __slots__ = ("_calls", "_name", "in_flight", "retries")

    def __init__(self, backend: str) -> None:
        self._name = backend
        self.in_flight = UPSTREAM_IN_FLIGHT.labels(backend)
        self.retries = UPSTREAM_RETRIES.labels(backend)
        self._calls = {"2xx": UPSTREAM_CALLS.labels(backend, "2xx")}

    def called(self, outcome: str) -> None:
        """Count a call that ended in outcome, one of UPSTREAM_CALLS' classes."""
        cell = self._calls.get(outcome)
        if cell is None:
            cell = self._calls[outcome] = UPSTREAM_CALLS.labels(self._name, outcome)
        cell.inc()


_models: dict[str, ModelSeries] = {}
_backends: dict[str, BackendSeries] = {}


def model_series(model: str) -> ModelSeries:
    """model: a label from ModelTable.metric_label, never a client's free text."""
    series = _models.get(model)
    if series is None:
        series = _models[model] = ModelSeries(model)
    return series


def backend_series(backend: str) -> BackendSeries:
    series = _backends.get(backend)
    if series is None:
        series = _backends[backend] = BackendSeries(backend)
    return series
