"""chatq batch run: a JSONL file of chat requests through the server's batch route, with
at most N unfinished at a time, each result appended to the output file as it finishes.

A request's idempotency key is derived from its custom_id and its request, so running the
same command again (after a crash or Ctrl-C) submits nothing twice: what is in the output
file already is skipped, and what was submitted but not written yet comes back from the
server as the request that exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from chatq.client import exits
from chatq.client.http import TERMINAL, ChatqClient, ServerError, Unreachable
from chatq.client.interrupt import Interrupted, until_interrupted
from chatq.client.progress import Counts, reporter

BATCH_MAX = 1000  # items the batch route takes in one call
CHAT_URLS = frozenset({"/v1/chat/completions", "/chat/completions"})
_CREATE_FIELDS = ("metadata", "webhook_url", "priority")  # taken beside "request"
_RETRIES = 6  # of a call that found the server unreachable, overloaded or limiting
_ITEM_LIMIT_WAIT_S = 1.0  # before resubmitting items a limit refused
_MAX_PAUSE_S = 60.0  # between retries (a per-minute rate's Retry-After is at most a minute)
T = TypeVar("T")


class BatchInputError(Exception):
    """The input cannot be read or the output cannot be written."""


@dataclass(frozen=True, slots=True)
class Item:
    """A good input line: its custom_id, and its create body with its idempotency key."""

    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    custom_id: str | None
    reason: str


def parse_line(number: int, text: str) -> Item | BadLine:
    """One input line: OpenAI Batch's {"custom_id", "method", "url", "body"} or
    {"custom_id", "request", and optionally metadata, webhook_url, priority}."""
    try:
        entry = json.loads(text)
    except ValueError as exc:
        return BadLine(number, None, f"not JSON: {exc}")
    if not isinstance(entry, dict):
        return BadLine(number, None, "not a JSON object")
    custom_id = entry.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return BadLine(number, None, "no custom_id (a non-empty string)")
    if "request" in entry:
        request = entry["request"]
        extra = {k: entry[k] for k in _CREATE_FIELDS if k in entry}
    elif "body" in entry:
        request, extra = entry["body"], {}
        if entry.get("method", "POST") != "POST":
            return BadLine(number, custom_id, f"method {entry['method']!r}: only POST")
        if entry.get("url", "/v1/chat/completions") not in CHAT_URLS:
            urls = " or ".join(sorted(CHAT_URLS))
            return BadLine(number, custom_id, f"url {entry['url']!r}: only {urls}")
    else:
        return BadLine(number, custom_id, 'neither "body" nor "request"')
    if not isinstance(request, dict):
        return BadLine(number, custom_id, "the request is not a JSON object")
    key = idempotency_key(custom_id, request)
    return Item(number, custom_id, {"request": request, "idempotency_key": key, **extra})


def idempotency_key(custom_id: str, request: dict[str, Any]) -> str:
    """The same for the same custom_id and request, in any run; another file reusing a
    custom_id for another request gets another key (not a 409)."""
    canonical = json.dumps([custom_id, request], sort_keys=True, separators=(",", ":"))
    return "chatq-batch-" + hashlib.sha256(canonical.encode()).hexdigest()


def read_input(path: Path) -> list[Item | BadLine]:
    """The non-blank lines of the input, parsed; a custom_id seen before is a bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"cannot read {path}: {exc}") from None
    entries: list[Item | BadLine] = []
    seen: set[str] = set()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        entry = parse_line(number, text)
        custom_id = entry.custom_id
        if custom_id is not None:
            if custom_id in seen:
                entry = BadLine(number, None, f"custom_id {custom_id!r} repeats")
            seen.add(custom_id)
        entries.append(entry)
    return entries


def written(path: Path) -> dict[str, bool]:
    """The custom_ids the output file holds, each with whether it failed. A last line cut
    short (the run was killed while writing it) is removed."""
    if not path.exists():
        return {}
    try:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            path.write_bytes(data)
    except OSError as exc:
        raise BatchInputError(f"cannot read {path}: {exc}") from None
    found: dict[str, bool] = {}
    for text in data.decode("utf-8", errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            found[line["custom_id"]] = line.get("error") is not None
    return found


def output_line(custom_id: str, job: dict[str, Any]) -> dict[str, Any]:
    """A finished request in OpenAI Batch's output shape."""
    if job["status"] == "COMPLETED":
        response = {"status_code": 200, "request_id": job["id"], "body": job["response"]}
        return {"id": job["id"], "custom_id": custom_id, "response": response, "error": None}
    error = {"code": "request_failed", "message": job.get("error_message")}
    return {"id": job["id"], "custom_id": custom_id, "response": None, "error": error}


def refused_line(custom_id: str, error: dict[str, Any]) -> dict[str, Any]:
    """An item the server refused (its error in Perplexity's shape) in the output shape."""
    status = error.get("code") if isinstance(error.get("code"), int) else 400
    response = {"status_code": status, "request_id": None, "body": {"error": error}}
    failure = {"code": str(error.get("type", "invalid_request")), "message": error.get("message")}
    return {"id": None, "custom_id": custom_id, "response": response, "error": failure}


def bad_line(entry: BadLine) -> dict[str, Any]:
    error = {"code": "invalid_line", "message": f"line {entry.line}: {entry.reason}"}
    return {"id": None, "custom_id": entry.custom_id, "response": None, "error": error}


class _Run:
    """One run: the queue of items, the in-flight bound, the output and the tally."""

    def __init__(
        self, client: ChatqClient, out: TextIO, items: list[Item], concurrency: int, counts: Counts
    ) -> None:
        self.client = client
        self.out = out
        self.queue = deque(items)
        self.concurrency = concurrency
        self.unfinished = 0  # taken from the queue and not written yet
        self.room = asyncio.Condition()
        self.counts = counts
        self.changed: Callable[[], None] = _nothing  # the progress display's, once it is up

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as watchers:
                while self.queue:  # (the task group then waits for the last watchers)
                    await self._submit(await self._next_chunk(), watchers)
        except BaseExceptionGroup as group:
            raise _first(group) from None

    async def _next_chunk(self) -> list[Item]:
        """As many items as there is room for, once there is room for a fair number (not one
        at a time: the batch route is for many)."""
        async with self.room:
            await self.room.wait_for(self._room_enough)
            take = min(self.concurrency - self.unfinished, BATCH_MAX, len(self.queue))
            self.unfinished += take
            return [self.queue.popleft() for _ in range(take)]

    def _room_enough(self) -> bool:
        free = self.concurrency - self.unfinished
        return free > 0 and free >= min(max(1, self.concurrency // 4), len(self.queue))

    async def _submit(self, chunk: list[Item], watchers: asyncio.TaskGroup) -> None:
        results = await _retrying(lambda: self.client.submit_batch([i.body for i in chunk]))
        self.counts.submitted += len(chunk)
        again: list[Item] = []
        for item, result in zip(chunk, results, strict=True):
            if "error" in result and "id" not in result:
                if result["error"].get("code") == 429:  # a limit: not this item's fault
                    again.append(item)
                else:
                    await self._finish(refused_line(item.custom_id, result["error"]), True)
            elif result["status"] in TERMINAL:
                await self._finish(
                    output_line(item.custom_id, result), result["status"] != "COMPLETED"
                )
            else:
                self.counts.running += 1
                watchers.create_task(self._watch(item, result["id"]))
        if again:
            self.counts.submitted -= len(again)
            await asyncio.sleep(_ITEM_LIMIT_WAIT_S)
            async with self.room:
                self.queue.extendleft(reversed(again))
                self.unfinished -= len(again)
                self.room.notify_all()
        self.changed()

    async def _watch(self, item: Item, request_id: str) -> None:
        try:
            job = await _retrying(lambda: self.client.wait(request_id))
            line, failed = output_line(item.custom_id, job), job["status"] != "COMPLETED"
        except ServerError as exc:
            if exc.status != 404:
                raise
            error = {"message": f"request {request_id} is gone: {exc.message}", "type": exc.kind}
            line, failed = refused_line(item.custom_id, {**error, "code": 404}), True
        self.counts.running -= 1
        await self._finish(line, failed)

    async def _finish(self, line: dict[str, Any], failed: bool) -> None:
        self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.out.flush()
        if failed:
            self.counts.failed += 1
        else:
            self.counts.done += 1
        async with self.room:
            self.unfinished -= 1
            self.room.notify_all()
        self.changed()


def _nothing() -> None:
    pass


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What went wrong first in a task group (the server errors the command reports)."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """call(), again after a pause while the server is unreachable, overloaded (5xx) or
    limiting (429): safe, since every request carries its idempotency key. The pause is
    the server's Retry-After when it gives one (a limit says when it lets the next one in)."""
    for attempt in range(_RETRIES + 1):
        try:
            return await call()
        except (ServerError, Unreachable) as exc:
            status = exc.status if isinstance(exc, ServerError) else 503
            if attempt == _RETRIES or (status < 500 and status != 429):
                raise
            said = exc.retry_after if isinstance(exc, ServerError) else None
            await asyncio.sleep(min(_MAX_PAUSE_S, said if said is not None else 0.5 * 2**attempt))
    raise AssertionError("unreachable")


async def run_batch(
    client: ChatqClient, source: Path, target: Path, concurrency: int, every_s: float
) -> int:
    """Run source's requests not yet in target, appending their results; the exit status."""
    entries = read_input(source)
    before = written(target)
    for entry in entries:
        if isinstance(entry, BadLine):
            exits.fail(f"{source}:{entry.line}: {entry.reason}")
    items = [e for e in entries if isinstance(e, Item) and e.custom_id not in before]
    bad = [e for e in entries if isinstance(e, BadLine) and e.custom_id not in before]
    if before:
        print(f"batch: resuming; {len(before)} already in {target}", file=sys.stderr, flush=True)
    counts = Counts(total=len(items) + len(bad))
    try:
        out = target.open("a", encoding="utf-8")
    except OSError as exc:
        raise BatchInputError(f"cannot write {target}: {exc}") from None
    with out:
        for entry in bad:
            if entry.custom_id is not None:
                out.write(json.dumps(bad_line(entry), ensure_ascii=False) + "\n")
        counts.failed += len(bad)
        out.flush()
        run = _Run(client, out, items, concurrency, counts)
        async with reporter(counts, every_s) as progress:
            run.changed = progress.changed
            try:
                await until_interrupted(run.run())
            except Interrupted:
                exits.fail(
                    f"interrupted: {counts.finished} of {counts.total} written to {target}; "
                    "run the same command again to resume"
                )
                return exits.INTERRUPTED
    failed = counts.failed + sum(before.values())
    if failed:
        exits.fail(f"{failed} of {len(before) + counts.total} requests failed; see {target}")
        return exits.FAILED
    return exits.OK
