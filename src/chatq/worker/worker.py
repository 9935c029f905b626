"""The worker: claim CREATED jobs oldest first, run them, record exactly one result.

Shutdown follows procrastinate: a stop event, a grace period for in-flight jobs, then
whatever is left is cancelled and handed back to the queue. A job whose cancel is pending
stops its backend call and fails; a job submitted with stream: true has its text
checkpointed as it is generated (worker/text.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chatq import metrics
from chatq.backends.base import BackendError, PermanentError, TransientError
from chatq.backends.pool import BackendPool
from chatq.config import WebhookSettings, WorkerSettings
from chatq.domain import CANCELLED, JSON, ClaimedJob
from chatq.group_commit import GroupCommit
from chatq.logs import request_context
from chatq.races import first_of
from chatq.retry import backoff_delay
from chatq.store import Store
from chatq.worker.text import StreamedText, TextCheckpoints
from chatq.worker.webhooks import Deliverer

log = logging.getLogger("chatq.worker")

_SECONDS_PER_DAY = 86_400.0
_PURGE_EVERY_S = 600.0
_MAX_COMPLETIONS_PER_BATCH = 512
# Results waiting to be recorded from which the worker counts as busy: it is writing a
# backlog, even once every job has been claimed.
_BUSY_UNRECORDED = 64


class Worker:
    def __init__(
        self,
        store: Store,
        backends: BackendPool,
        settings: WorkerSettings,
        clock: Callable[[], float] = time.time,
        webhooks: WebhookSettings | None = None,
    ) -> None:
        self.store = store
        self.backends = backends
        self.settings = settings
        self.clock = clock
        self.id = f"{socket.gethostname()}:{secrets.token_hex(4)}"
        # Every claimed job not yet recorded, and the subset whose backend call holds one of
        # the `concurrency` slots. A job gives its slot back as soon as its backend answers,
        # so the next claim overlaps the recording of the last batch's results (+35% jobs/s
        # in bench/queue_drain.py) instead of waiting for it.
        self._running: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, _Progress] = {}
        self._calling: set[str] = set()
        self._slot_freed = asyncio.Event()
        # Results that arrive while a batch is being recorded go into the next one together
        # (one complete_many, one transaction): a burst of N costs a few round trips, not N.
        self._completions = GroupCommit(self._complete_batch, _MAX_COMPLETIONS_PER_BATCH)
        self._texts = TextCheckpoints(store, self.id, settings.text_flush_s)
        # Webhook deliveries run beside the jobs, on a concurrency budget of their own, and
        # give way to them while the worker works off a backlog.
        self._claims_full = False
        self.deliverer = Deliverer(
            store, webhooks or WebhookSettings(), self.id, clock, jobs_busy=self._busy
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Work until stop is set, then drain within the grace period and hand back the rest."""
        log.info("worker %s started (concurrency %d)", self.id, self.settings.concurrency)
        metrics.declare_worker_series([c.name for c in self.backends.table.backends])
        finished = asyncio.Event()  # stops the helpers below once the drain is over too
        helpers = [
            asyncio.create_task(self._upkeep(stop), name="chatq-worker-upkeep"),
            asyncio.create_task(self._watch_cancels(finished), name="chatq-worker-cancels"),
            asyncio.create_task(self._texts.run(finished), name="chatq-worker-text"),
        ]
        deliveries = asyncio.create_task(self.deliverer.run(stop), name="chatq-worker-webhooks")
        try:
            await self._claim_loop(stop)
        finally:
            await self._drain()
            with contextlib.suppress(Exception):
                await self._completions.drain()
            await asyncio.gather(deliveries, return_exceptions=True)
            finished.set()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            log.info("worker %s stopped", self.id)

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        while not stop.is_set():
            free = s.concurrency - len(self._calling)
            if free <= 0:
                await first_of(stop, self._slot_freed, timeout=s.poll_interval_s)
                self._slot_freed.clear()
                continue
            try:
                jobs = await self.store.claim(self.id, free, s.lease_s)
            except Exception:
                log.exception("claim failed; retrying in %.1fs", s.poll_interval_s)
                await first_of(stop, timeout=s.poll_interval_s)
                continue
            self._claims_full = len(jobs) == free
            for job in jobs:
                task = asyncio.create_task(
                    self._execute(job), name=f"chatq-job-{job.id}", context=request_context(job.id)
                )
                self._running[job.id] = task
                self._calling.add(job.id)
                task.add_done_callback(functools.partial(self._finished, job.id))
            if not jobs:
                wake = asyncio.create_task(self.store.wait_for_work(s.poll_interval_s))
                await first_of(stop, wake)
                wake.cancel()

    def _busy(self) -> bool:
        """Whether jobs are backlogged: the last claim came back full (more are queued), or
        many results are waiting to be recorded."""
        unrecorded = len(self._running) - len(self._calling)
        return self._claims_full or unrecorded >= _BUSY_UNRECORDED

    def _finished(self, job_id: str, _: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._free_slot(job_id)  # if the task ended before its backend call did

    def _free_slot(self, job_id: str) -> None:
        if job_id in self._calling:
            self._calling.remove(job_id)
            self._slot_freed.set()

    async def _execute(self, job: ClaimedJob) -> None:
        started = self.clock()
        series = metrics.model_series(self.backends.table.metric_label(job.model))
        series.queue_wait.observe(max(0.0, started - job.created_at))
        progress = self._progress[job.id] = _Progress()
        try:
            with self._streamed(job) as progress.text:
                try:
                    outcome = await self._run_backend(job, progress)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug in a backend must not kill the worker
                    log.exception("job %s: unexpected error", job.id)
                    outcome = f"internal error in backend: {type(exc).__name__}: {exc}"
                self._free_slot(job.id)
                if progress.text is not None:
                    # The last pieces are stored before the result, so that a watcher of a
                    # failed request can read all the text it got.
                    with contextlib.suppress(Exception):
                        await self._texts.flush()
        finally:
            del self._progress[job.id]
        try:
            if isinstance(outcome, dict):
                outcome = self.backends.priced(job.model, outcome)
                recorded = await self._completions.write((job.id, outcome))
            else:
                recorded = await self.store.fail(job.id, self.id, outcome)
        except Exception:
            # The lease will expire and another worker will run the job again.
            log.exception("job %s: could not record the result", job.id)
            series.lost.inc()
            return
        ran = self.clock() - started
        series.run_time.observe(ran)
        if not recorded:
            log.warning("job %s: lease lost before the result was recorded; discarded", job.id)
            series.lost.inc()
            return
        if isinstance(outcome, dict):
            series.completed.inc()
        elif outcome == CANCELLED:
            series.cancelled.inc()
        else:
            series.failed.inc()
        if log.isEnabledFor(logging.INFO):
            log.info(
                "job %s %s: model %s, %d attempt(s)%s, waited %.3fs, ran %.3fs",
                job.id,
                "COMPLETED" if isinstance(outcome, dict) else "FAILED",
                job.model,
                progress.attempts,
                f" in delivery {job.attempts}" if job.attempts > 1 else "",
                max(0.0, started - job.created_at),
                ran,
            )

    async def _complete_batch(self, results: list[tuple[str, JSON]]) -> list[bool]:
        """Record results; for each, True if the job was still ours."""
        ours = await self.store.complete_many(self.id, results)
        return [job_id in ours for job_id, _ in results]

    @contextlib.contextmanager
    def _streamed(self, job: ClaimedJob) -> Iterator[StreamedText | None]:
        """The job's text, checkpointed as it is generated, if it was submitted to stream."""
        if job.request.get("stream") is not True:
            yield None
            return
        with self._texts.open(job.id, job.run) as text:
            yield text

    async def _run_backend(self, job: ClaimedJob, progress: _Progress) -> dict[str, object] | str:
        """The CompletionResponse, or the error message to fail the job with."""
        try:
            return await self._attempts(job, progress)
        except asyncio.CancelledError:
            if not progress.cancel_requested:
                raise  # the worker is stopping: the job goes back to the queue
            _task().uncancel()
            return CANCELLED

    async def _attempts(self, job: ClaimedJob, progress: _Progress) -> dict[str, object] | str:
        backend = self.backends.for_model(job.model)
        if backend is None:
            return f"no backend serves model {job.model!r} any more"
        s = self.settings
        deadline = self.clock() + s.deadline_s
        text = progress.text
        upstream = metrics.backend_series(backend.name)
        attempt = 0
        while True:
            attempt = progress.attempts = attempt + 1
            if text is not None and text.generated:
                # The last attempt streamed text before it failed: this one starts over, in
                # a run of its own, so no watcher takes it for more of the same text.
                run = await self.store.new_run(job.id, self.id)
                if run is None:
                    return "the lease was lost before the call could be retried"
                text.restart(run)
            upstream.in_flight.inc()
            try:
                async with asyncio.timeout(max(0.0, deadline - self.clock())):
                    response = await backend.run(job.id, job.request, text.add if text else None)
                upstream.called("2xx")
                return response
            except Exception as exc:
                if progress.cancel_requested:
                    return CANCELLED  # whatever the call said as it was stopped
                upstream.called(_upstream_class(exc))
                if isinstance(exc, PermanentError):
                    return str(exc)
                if isinstance(exc, TimeoutError):
                    return f"deadline of {s.deadline_s:g}s exceeded after {attempt} attempt(s)"
                if not isinstance(exc, TransientError):
                    raise
                error, retry_after = str(exc), exc.retry_after
            finally:
                upstream.in_flight.dec()
            if attempt >= s.max_attempts:
                return f"gave up after {attempt} attempt(s); last error: {error}"
            delay = backoff_delay(attempt, s.backoff_base_s, s.backoff_max_s, retry_after)
            if self.clock() + delay >= deadline:
                return (
                    f"deadline of {s.deadline_s:g}s would pass before the next retry; "
                    f"{attempt} attempt(s); last error: {error}"
                )
            log.info(
                "job %s: attempt %d failed (%s); retrying in %.2fs", job.id, attempt, error, delay
            )
            upstream.retries.inc()
            await asyncio.sleep(delay)

    async def _watch_cancels(self, finished: asyncio.Event) -> None:
        """Stop the jobs whose cancel is pending: woken by a cancel anywhere, and looking
        at least every cancel_poll_s while it runs jobs."""
        while not finished.is_set():
            await self.store.wait_for_cancel(self.settings.cancel_poll_s)
            if not self._progress:
                continue
            try:
                cancelled = await self.store.cancel_requested(self.id)
            except Exception:
                log.warning("could not look for cancels; trying again", exc_info=True)
                continue
            for job_id in cancelled:
                progress = self._progress.get(job_id)
                # Only a job still in its backend call (or between its attempts) is stopped:
                # one that has its answer records it.
                if progress is None or progress.cancel_requested or job_id not in self._calling:
                    continue
                log.info(
                    "job %s: cancelled by the client; stopping it",
                    job_id,
                    extra={"request_id": job_id},
                )
                progress.cancel_requested = True
                self._running[job_id].cancel()

    async def _upkeep(self, stop: asyncio.Event) -> None:
        """Renew our leases (one statement), rescue expired ones, purge old results."""
        s = self.settings
        every = s.lease_s / 3
        next_purge = 0.0
        while not stop.is_set():
            try:
                if self._running:
                    await self.store.renew(self.id, s.lease_s)
                requeued, failed = await self.store.rescue(s.max_deliveries)
                if requeued or failed:
                    metrics.LEASES_EXPIRED.labels("requeued").inc(requeued)
                    metrics.LEASES_EXPIRED.labels("failed").inc(failed)
                    log.warning("rescued expired leases: %d requeued, %d failed", requeued, failed)
                if self.clock() >= next_purge:
                    cutoff = self.clock() - s.retention_days * _SECONDS_PER_DAY
                    purged = await self.store.purge(cutoff)
                    if purged:
                        log.info("purged %d finished requests", purged)
                    next_purge = self.clock() + _PURGE_EVERY_S
            except Exception:
                log.exception("lease upkeep failed; trying again in %.1fs", every)
            await first_of(stop, timeout=every)
        # Until the drain ends, in-flight jobs still need their leases.
        while self._running:
            with contextlib.suppress(Exception):
                await self.store.renew(self.id, s.lease_s)
            await asyncio.sleep(every)

    async def _drain(self) -> None:
        if not self._running:
            return
        tasks = list(self._running.values())
        log.info("stopping: waiting up to %.1fs for %d job(s)", self.settings.grace_s, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=self.settings.grace_s)
        if not pending:
            return
        left = [job_id for job_id, task in self._running.items() if task in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        released = await self.store.release(self.id, left)
        log.info("stopping: handed %d unfinished job(s) back to the queue", released)


@dataclass
class _Progress:
    """What a job's run has done so far, known however the job ends."""

    attempts: int = 0  # backend calls made
    # The client cancelled the job: its task was cancelled, which stops its backend call
    # (the upstream connection is closed, the local model stops generating).
    cancel_requested: bool = False
    text: StreamedText | None = None


def _upstream_class(exc: Exception) -> str:
    """The class of a failed backend call, for chatq_upstream_calls_total."""
    if isinstance(exc, BackendError):
        return exc.kind
    return "timeout" if isinstance(exc, TimeoutError) else "other"


def _task() -> asyncio.Task[object]:
    task = asyncio.current_task()
    assert task is not None, "jobs run in tasks"
    return task
