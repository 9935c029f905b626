"""The client commands as a person sees them: chatq ask, submit, get, wait, cancel, ls and
batch run, each printing text (or JSON with --json) and ending with an exit status from exits."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatq.client import exits
from chatq.client.batch import BatchInputError, run_batch
from chatq.client.http import ChatqClient, ServerError, Unreachable
from chatq.client.interrupt import Interrupted, until_interrupted
from chatq.client.settings import ClientSettings

_PREVIEW_CHARS = 40
_PREVIEWED = 200  # rows of ls whose prompt is fetched; the rest show their metadata
_PREVIEW_FETCHES = 8  # at once


def run(args: argparse.Namespace, settings: ClientSettings) -> int:
    """Run one client command; its exit status."""
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return exits.INTERRUPTED


async def _run(args: argparse.Namespace, settings: ClientSettings) -> int:
    if settings.key is None:
        exits.fail("no API key: give --key or set CHATQ_API_KEY (chatq keys create NAME)")
        return exits.AUTH
    command: Callable[[ChatqClient, argparse.Namespace, ClientSettings], Awaitable[int]]
    command = _COMMANDS[args.command]
    connections = max(10, getattr(args, "concurrency", 0) + 4)
    async with ChatqClient(
        settings.url, settings.key.get_secret_value(), connections=connections
    ) as client:
        try:
            return await command(client, args, settings)
        except (ServerError, Unreachable) as exc:
            return exits.server_error(exc)
        except Interrupted:
            return exits.INTERRUPTED


async def _ask(client: ChatqClient, args: argparse.Namespace, settings: ClientSettings) -> int:
    model = settings.model or await _default_model(client)
    if model is None:
        return exits.USAGE
    request = _request(model, args.prompt, args.system, args.max_tokens)
    job = await until_interrupted(client.submit({"request": {**request, "stream": True}}))
    print(f"request {job['id']} ({model})", file=sys.stderr, flush=True)
    shown = _Shown()
    try:
        final = await until_interrupted(_stream(client, job["id"], not args.json, shown))
    except Interrupted:
        cancelled = await client.cancel(job["id"])
        if shown.text:
            print(flush=True)  # end the line the answer so far was on
        exits.fail(f"cancelled request {job['id']} ({cancelled['status']})")
        return exits.INTERRUPTED
    if args.json:
        _print_json(final)
    elif final["status"] == "COMPLETED":
        print("" if shown.text else answer_text(final), flush=True)
    elif shown.text:
        print(flush=True)
    return _finished(final)


@dataclass(slots=True)
class _Shown:
    """What ask has printed of the answer: whether any text, and of which run."""

    text: bool = False
    run: object = None


async def _stream(
    client: ChatqClient, request_id: str, show: bool, shown: _Shown
) -> dict[str, Any]:
    """The request's final object once done, printing its text as it comes if show."""
    async for event in client.events(request_id):
        if event.kind == "status":
            run = event.data.get("run", shown.run)
            if shown.text and shown.run is not None and run != shown.run:
                # The job restarted (its worker died, or a retry): the text starts over.
                print(flush=True)
                exits.fail("the request restarted; its answer from the start:")
            shown.run = run
        elif event.kind == "delta" and show:
            sys.stdout.write(str(event.data.get("content", "")))
            sys.stdout.flush()
            shown.text = True
        elif event.kind == "done":
            return event.data
    raise Unreachable("the event stream ended without its done event")


async def _default_model(client: ChatqClient) -> str | None:
    """The server's first listed model; None (having said so) when it lists none."""
    models = await client.models()
    if not models:
        exits.fail("the server lists no models: name one with --model (or CHATQ_MODEL)")
        return None
    return models[0]


def _request(model: str, prompt: str, system: str | None, max_tokens: int | None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    request: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    return request


async def _submit(client: ChatqClient, args: argparse.Namespace, settings: ClientSettings) -> int:
    if (args.prompt is None) == (args.file is None):
        exits.fail("give either a PROMPT or --file FILE (a JSON create body; - for stdin)")
        return exits.USAGE
    if args.file is not None:
        body = _read_body(args.file)
        if body is None:
            return exits.USAGE
    else:
        model = settings.model or await _default_model(client)
        if model is None:
            return exits.USAGE
        request = _request(model, args.prompt, args.system, args.max_tokens)
        body = {"request": {**request, **({"stream": True} if args.stream else {})}}
    job = await client.submit(body, args.idempotency_key)
    if args.json:
        _print_json(job)
    else:
        print(job["id"], flush=True)
    return exits.OK


def _read_body(name: str) -> dict[str, Any] | None:
    """The JSON object in the file (- : stdin); None, having said why, if it is not one."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        body = json.loads(text)
    except OSError as exc:
        exits.fail(f"cannot read {name}: {exc.strerror or exc}")
        return None
    except ValueError as exc:
        exits.fail(f"{name} is not JSON: {exc}")
        return None
    if not isinstance(body, dict):
        exits.fail(f"{name}: expected a JSON object (a create body or a chat request)")
        return None
    return body


async def _get(client: ChatqClient, args: argparse.Namespace, _: ClientSettings) -> int:
    _show(await client.get(args.id), args.json)
    return exits.OK


async def _wait(client: ChatqClient, args: argparse.Namespace, _: ClientSettings) -> int:
    job = await until_interrupted(client.wait(args.id))
    _show(job, args.json)
    return _finished(job)


async def _cancel(client: ChatqClient, args: argparse.Namespace, _: ClientSettings) -> int:
    job = await client.cancel(args.id)
    if args.json:
        _print_json(job)
    else:
        error = f": {job['error_message']}" if job.get("error_message") else ""
        print(f"{job['id']} {job['status']}{error}", flush=True)
    return exits.OK


async def _ls(client: ChatqClient, args: argparse.Namespace, settings: ClientSettings) -> int:
    if not 1 <= args.limit <= 100_000:
        exits.fail(f"--limit must be from 1 to 100000, not {args.limit}")
        return exits.USAGE
    statuses = [s.upper() for given in args.status or () for s in given.split(",") if s]
    found = await client.list(statuses, args.model, args.limit)
    if args.json:
        _print_json(found)
        return exits.OK
    if not found:
        print("no requests", flush=True)
        return exits.OK
    shown = await _previews(client, found)
    rows = [
        [r["id"], r["status"], r["model"], when(r["created_at"]), text]
        for r, text in zip(found, shown, strict=True)
    ]
    for line in table(["ID", "STATUS", "MODEL", "CREATED", "PROMPT"], rows):
        print(line)
    sys.stdout.flush()
    return exits.OK


async def _batch(client: ChatqClient, args: argparse.Namespace, _: ClientSettings) -> int:
    if not 1 <= args.concurrency <= 1000:
        exits.fail(f"--concurrency must be from 1 to 1000, not {args.concurrency}")
        return exits.USAGE
    try:
        return await run_batch(
            client, Path(args.input), Path(args.output), args.concurrency, args.progress_every
        )
    except BatchInputError as exc:
        exits.fail(str(exc))
        return exits.USAGE


def _finished(job: dict[str, Any]) -> int:
    """OK for a COMPLETED request; for a FAILED one, say why, and FAILED."""
    if job["status"] == "FAILED":
        exits.fail(f"request {job['id']} failed: {job.get('error_message')}")
        return exits.FAILED
    return exits.OK


def _show(job: dict[str, Any], as_json: bool) -> None:
    """A request's full object: as JSON, or its fields and then its answer or error."""
    if as_json:
        _print_json(job)
        return
    fields = [("id", job["id"]), ("status", job["status"]), ("model", job["model"])]
    for name in ("created", "started", "completed", "failed"):
        if job.get(f"{name}_at") is not None:
            fields.append((name, when(job[f"{name}_at"])))
    if job.get("metadata"):
        fields.append(("metadata", _pairs(job["metadata"])))
    usage = (job.get("response") or {}).get("usage") or {}
    if usage:
        fields.append(
            ("tokens", f"{usage.get('prompt_tokens')} + {usage.get('completion_tokens')}")
        )
    if job.get("error_message"):
        fields.append(("error", job["error_message"]))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name.ljust(width)}  {value}")
    if job["status"] == "COMPLETED":
        print()
        print(answer_text(job))
    sys.stdout.flush()


def answer_text(job: dict[str, Any]) -> str:
    """The text of a completed request's first choice."""
    try:
        content = job["response"]["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else json.dumps(content)


async def _previews(client: ChatqClient, found: list[dict[str, Any]]) -> list[str]:
    """A short look at each listed request: its last user message, as GET .../{id}/request
    gives it (a few at a time, for the first _PREVIEWED rows), else its metadata."""
    fetching = asyncio.Semaphore(_PREVIEW_FETCHES)

    async def one(summary: dict[str, Any]) -> str:
        async with fetching:
            return preview(await client.submitted(summary["id"]), summary.get("metadata"))

    head = await asyncio.gather(*(one(r) for r in found[:_PREVIEWED]))
    return [*head, *(preview(None, r.get("metadata")) for r in found[_PREVIEWED:])]


def preview(request: dict[str, Any] | None, metadata: object) -> str:
    """A request's last user message (or, without it, its metadata), cut short."""
    messages = (request or {}).get("messages") or []
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = users[-1] if users and isinstance(users[-1], str) else _pairs(metadata)
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def table(heads: list[str], rows: list[list[str]]) -> list[str]:
    """Rows under their heads, in columns as wide as their widest cell."""
    widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(len(heads))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [heads, *rows]
    ]


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _pairs(metadata: object) -> str:
    return " ".join(f"{k}={v}" for k, v in metadata.items()) if isinstance(metadata, dict) else ""


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)


_COMMANDS: dict[
    str, Callable[[ChatqClient, argparse.Namespace, ClientSettings], Awaitable[int]]
] = {
    "ask": _ask,
    "submit": _submit,
    "get": _get,
    "wait": _wait,
    "cancel": _cancel,
    "ls": _ls,
    "batch": _batch,
}
