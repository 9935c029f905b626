"""Webhook delivery: a worker claims due deliveries from the outbox and POSTs them, signed.

At least once: a delivery is recorded DELIVERED only after a 2xx; a worker that dies with
deliveries claimed leaves them to come due again when their lease ends. Deliveries have a
concurrency budget of their own, apart from jobs', and a smaller one per owner that the
claim itself keeps to, so an owner's receiver that hangs holds at most
per_owner_concurrency attempts (for timeout_s each) while other owners' deliveries go on.
Every attempt carries the same webhook-id; retries back off exponentially, with jitter,
until horizon_s after the event; a 410 disables the URL for its owner.

Jobs come first. While the worker is busy with a backlog of jobs (jobs_busy()), deliveries
are claimed once every busy_turn_s: an attempt costs the cores more than an echo job does,
and delivering a burst's events while the burst runs would slow the burst to the pace of its
webhooks. Once the backlog is gone, they go out at full concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
from yarl import URL

import chatq
from chatq import metrics
from chatq.config import WebhookSettings
from chatq.domain import Delivery, DeliveryResult, DeliveryStatus
from chatq.logs import request_context
from chatq.races import first_of
from chatq.retry import backoff_delay
from chatq.store import Store
from chatq.webhooks import event_body, signature_header
from chatq.worker.ssrf import GuardedResolver, RefusedAddress, check_literal, first_refusal

log = logging.getLogger("chatq.worker.webhooks")

# A claim lasts twice its attempt's timeout and this much more (the attempt's reads and its
# record); then another worker may take it.
_LEASE_MARGIN_S = 5.0
_USER_AGENT = f"chatq/{chatq.__version__} (webhooks)"
# While jobs are backlogged, one delivery claim per this long: events still go out, slowly.
_BUSY_TURN_S = 0.2


class Deliverer:
    def __init__(
        self,
        store: Store,
        settings: WebhookSettings,
        worker_id: str,
        clock: Callable[[], float] = time.time,
        rand: random.Random | None = None,
        jobs_busy: Callable[[], bool] = lambda: False,
        busy_turn_s: float = _BUSY_TURN_S,
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker_id = worker_id
        self.clock = clock
        self._rand = rand or random.Random()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._per_owner: Counter[str] = Counter()
        self._slot_freed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._jobs_busy = jobs_busy
        self._busy_turn_s = busy_turn_s

    @property
    def lease_s(self) -> float:
        return 2 * self.settings.timeout_s + _LEASE_MARGIN_S

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until stop is set; then let attempts in flight end (they are bounded by
        timeout_s) and hand back any that are left."""
        s = self.settings
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(s.allow_private_networks),
            use_dns_cache=False,  # every connection resolves, and is checked, anew
            limit=s.concurrency,
        )
        # trust_env=False: a proxy would connect on our behalf, past the address checks.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=s.timeout_s),
            trust_env=False,
            headers={"User-Agent": _USER_AGENT},
        )
        try:
            await self._claim_loop(stop)
        finally:
            await self._drain()
            await self._session.close()

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        while not stop.is_set():
            free = s.concurrency - len(self._in_flight)
            if free <= 0:
                await first_of(stop, self._slot_freed, timeout=s.poll_interval_s)
                self._slot_freed.clear()
                continue
            self._slot_freed.clear()
            if self._jobs_busy():
                await first_of(stop, timeout=self._busy_turn_s)
                if stop.is_set():
                    break
            try:
                claimed = await self.store.claim_deliveries(
                    self.worker_id, free, self.lease_s, s.per_owner_concurrency, self._per_owner
                )
            except Exception:
                log.exception("claiming webhook deliveries failed; retrying")
                await first_of(stop, timeout=s.poll_interval_s)
                continue
            for delivery in claimed:
                self._start(delivery)
            if len(claimed) < free:
                # Nothing more is due now, or only for owners at their share: wait for a new
                # delivery, a freed slot (its owner may take another), or the next poll.
                wake = asyncio.create_task(self.store.wait_for_deliveries(s.poll_interval_s))
                await first_of(stop, self._slot_freed, wake)
                wake.cancel()

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(
            self._deliver(delivery),
            name=f"chatq-webhook-{delivery.id}",
            context=request_context(delivery.request_id),
        )
        self._in_flight[delivery.id] = task
        self._per_owner[delivery.owner] += 1

        def done(_: asyncio.Task[None]) -> None:
            self._in_flight.pop(delivery.id, None)
            self._per_owner[delivery.owner] -= 1
            if self._per_owner[delivery.owner] <= 0:
                del self._per_owner[delivery.owner]
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            result = await self._attempt(delivery)
            if result is None:
                return
            if not await self.store.record_delivery(self.worker_id, result):
                log.warning("webhook %s: claim lost before the attempt was recorded", delivery.id)
                return
            metrics.WEBHOOK_DELIVERIES.labels(metrics.WEBHOOK_OUTCOMES[result.status]).inc()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Left claimed: it comes due again when its lease ends.
            log.exception("webhook %s: delivery failed unexpectedly", delivery.id)
            return
        log.info(
            "webhook %s (request %s) to %s: %s%s",
            delivery.id,
            delivery.request_id,
            delivery.url,
            result.status.value,
            f", {result.error}" if result.error else "",
        )

    async def _attempt(self, delivery: Delivery) -> DeliveryResult | None:
        """POST the delivery once; what to record, or None if its request is gone."""
        s = self.settings
        context = await self.store.delivery_context(delivery)
        if context is None:
            return None  # deleted since: its delivery went with it
        if context.url_disabled:
            return self._result(
                delivery,
                error="not sent: this URL answered 410 Gone before, which disabled it for its "
                "owner until it is set again",
                give_up=True,
            )
        secrets = context.secrets.signing(self.clock(), s.signature_overlap_s)
        body = event_body(delivery, context.job)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(secrets, delivery.id, timestamp, body),
        }
        assert self._session is not None
        try:
            url = URL(delivery.url)
            check_literal(url.raw_host or "", s.allow_private_networks)
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                location = response.headers.get("Location")
        except RefusedAddress as exc:
            return self._result(delivery, error=str(exc), give_up=True)
        except ValueError as exc:  # aiohttp's InvalidURL too: no retry would do better
            return self._result(delivery, error=f"invalid URL: {exc}", give_up=True)
        except TimeoutError:
            return self._result(delivery, error=f"no answer within {s.timeout_s:g}s")
        except aiohttp.ClientError as exc:
            refused = first_refusal(exc)
            if refused is not None:
                return self._result(delivery, error=str(refused), give_up=True)
            return self._result(delivery, error=f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return self._result(delivery, status_code=status, delivered=True)
        if status == 410:
            return self._result(
                delivery,
                status_code=status,
                error="410 Gone: deliveries to this URL are disabled for its owner until it is "
                "set again",
                give_up=True,
                disable=True,
            )
        why = f"HTTP {status}"
        if 300 <= status < 400:
            why += f", a redirect (to {location!r}), which is not followed"
        return self._result(delivery, status_code=status, error=why)

    def _result(
        self,
        delivery: Delivery,
        *,
        status_code: int | None = None,
        error: str | None = None,
        delivered: bool = False,
        give_up: bool = False,
        disable: bool = False,
    ) -> DeliveryResult:
        now = self.clock()
        if delivered:
            return DeliveryResult(delivery, now, DeliveryStatus.DELIVERED, status_code, None)
        s = self.settings
        attempt = delivery.attempts + 1
        delay = backoff_delay(attempt, s.backoff_base_s, s.backoff_max_s, rand=self._rand)
        if not give_up and now + delay > delivery.window_start + s.horizon_s:
            give_up = True
            error = f"{error}; gave up after {attempt} attempt(s) over {s.horizon_s:g}s"
        if give_up:
            return DeliveryResult(
                delivery, now, DeliveryStatus.FAILED, status_code, error, disable_url=disable
            )
        return DeliveryResult(
            delivery, now, DeliveryStatus.PENDING, status_code, error, next_attempt_at=now + delay
        )

    async def _drain(self) -> None:
        if self._in_flight:
            _, pending = await asyncio.wait(
                list(self._in_flight.values()), timeout=self.settings.timeout_s
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            released = await self.store.release_deliveries(self.worker_id)
            if released:
                log.info("stopping: handed %d webhook deliveries back", released)
