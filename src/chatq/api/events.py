"""The event stream of one request: `status` events (data: the summary, and the run of its
text), `delta` events (the text a stream: true request generates, data {"content"}), and a
last `done` (data: the full object), after which the stream ends.

Every event's id is its position in the request's history, (run, offset, rank): each run
of the text (a claim, or a retry that starts the text over) has its own positions, and an
offset counts characters of that run's text. A client that reconnects with Last-Event-ID,
to any API process, gets exactly what comes after that position: the text so far as one
delta (from the stored checkpoints, or from the final answer), then the live events. The
id also carries a tag that binds it to its request, so a garbage or foreign id is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from chatq.domain import Job, Status, TextPiece
from chatq.store import Store

# Ranks order the events that share a run and offset.
_STATUS, _DELTA, _REQUEUED, _FINISHED, _DONE = 1, 2, 3, 4, 5
_TAG_BYTES = 6
_MAX_ID_CHARS = 64


@dataclass(frozen=True, order=True, slots=True)
class Position:
    run: int
    offset: int
    rank: int


BEFORE_ALL = Position(0, 0, 0)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # the SSE event field: status, delta, done
    position: Position
    data: dict[str, Any]


class InvalidEventId(ValueError):
    pass


class EventIds:
    """Event ids: a position and a tag binding it to its request."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, request_id: str, position: Position) -> str:
        text = f"{position.run}.{position.offset}.{position.rank}"
        return f"{text}.{self._tag(request_id, text)}"

    def decode(self, request_id: str, event_id: str) -> Position:
        if len(event_id) > _MAX_ID_CHARS or not event_id.isascii():
            raise InvalidEventId(event_id)
        text, _, tag = event_id.rpartition(".")
        numbers = text.split(".")
        if len(numbers) != 3 or not all(n.isdigit() for n in numbers):
            raise InvalidEventId(event_id)
        if not hmac.compare_digest(tag, self._tag(request_id, text)):
            raise InvalidEventId(event_id)
        run, offset, rank = map(int, numbers)
        return Position(run, offset, rank)

    def _tag(self, request_id: str, text: str) -> str:
        digest = hmac.new(self._secret, f"{request_id}\0{text}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:_TAG_BYTES]).decode()


class EventHistory:
    """What one client has been sent of a request's events, and what comes next."""

    def __init__(self, store: Store, after: Position, summary: Any) -> None:
        self._store = store
        self._sent = after
        self._summary = summary  # Job -> the summary dict the API shows

    async def catch_up(self, job: Job) -> list[Event]:
        """The events after what was sent, as the request now is."""
        run, status = job.runs, job.status
        text = await self._text(job)
        end = len(text or "")
        if self._sent.run == run and self._sent.offset > end:
            # An id past the end of this run's text: resume from its end.
            self._sent = Position(run, end, self._sent.rank)
        events = []
        if status is Status.IN_PROGRESS or (job.finished and text):
            # A run's status comes before its text: a client that joins late, or that missed
            # the run's start, learns which run the text is (a finished request's status
            # comes again at the end, for the clients that saw its text as it came).
            events.append(self._status(job, Position(run, 0, _STATUS)))
        if text and status is not Status.CREATED:  # a requeued run's text is not the answer
            start = min(self._sent.offset, end) if self._sent.run == run else 0
            if end > start:
                delta = _content(text[start:])
                events.append(Event("delta", Position(run, end, _DELTA), delta))
        if status is Status.CREATED:
            position = Position(run, end, _REQUEUED) if run else Position(0, 0, _STATUS)
            events.append(self._status(job, position))
        if job.finished:
            events.append(self._status(job, Position(run, end, _FINISHED)))
            events.append(Event("done", Position(run, end, _DONE), {}))
        return self._keep_new(events)

    def piece(self, piece: TextPiece) -> list[Event] | None:
        """The delta a live piece of text adds; None if it does not follow on from what was
        sent (a new run, or a gap): then catch up from the store instead."""
        sent = self._sent
        if piece.run != sent.run or sent.rank not in (_STATUS, _DELTA) or piece.start > sent.offset:
            return None
        if piece.end <= sent.offset:
            return []
        new = piece.text[sent.offset - piece.start :]
        return self._keep_new(
            [Event("delta", Position(piece.run, piece.end, _DELTA), _content(new))]
        )

    def _keep_new(self, events: list[Event]) -> list[Event]:
        new = [e for e in events if e.position > self._sent]
        if new:
            self._sent = new[-1].position
        return new

    def _status(self, job: Job, position: Position) -> Event:
        return Event("status", position, {**self._summary(job), "run": job.runs})

    async def _text(self, job: Job) -> str | None:
        """The text of the request's current run; None if it does not stream or no run has
        begun. A completed request's is its answer, which holds every piece."""
        if not job.stream or job.runs == 0:
            return None
        if job.status is Status.COMPLETED and job.response is not None:
            return _answer(job.response)
        return await self._store.read_text(job.id, job.runs)


async def events_of(
    store: Store, owner: str, request_id: str, after: Position, summary: Any, full: Any
) -> AsyncIterator[Event]:
    """A request's events after a position, until its done event (or its deletion)."""
    history = EventHistory(store, after, summary)
    with store.watch(request_id) as watch:
        job = await store.get(owner, request_id)
        while job is not None:
            for event in await history.catch_up(job):
                yield _with_full_object(event, job, full)
                if event.kind == "done":
                    return
            if job.finished:
                return  # its done event was sent already: nothing comes after it
            while True:
                change = await watch.next()
                if change is None:
                    continue
                if change.piece is not None and job.stream:
                    events = history.piece(change.piece)
                    if events is not None:
                        for event in events:
                            yield event
                        continue
                break
            job = await store.get(owner, request_id)


def _with_full_object(event: Event, job: Job, full: Any) -> Event:
    return Event(event.kind, event.position, full(job)) if event.kind == "done" else event


def _content(text: str) -> dict[str, Any]:
    return {"content": text}


def _answer(response: dict[str, Any]) -> str:
    """The text of a finished answer: its first choice's message."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""
