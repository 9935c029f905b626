"""The command line: chatq serve | api | worker | migrate | keys create|list|update|revoke |
webhooks secret|deliveries|replay | usage, and the client: ask | submit | get | wait |
cancel | ls | batch run (their HTTP side and output are in chatq.client)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import chatq
from chatq import event_loop
from chatq.client.settings import CLIENT, CLIENT_OPTIONS, build_client_settings
from chatq.config import OPTIONS, ConfigError, Settings, build_settings
from chatq.domain import USAGE_DAYS, UsageRow, usage_range
from chatq.keys import create_key
from chatq.logs import configure_logging
from chatq.store import (
    DatabaseMissing,
    KeyLimit,
    Store,
    StoreUnavailable,
    UnsupportedDatabase,
    open_store,
)
from chatq.webhooks import InvalidWebhookUrl, check_webhook_url

# Commands that may create the database; the others refuse a SQLite file that is not there,
# so that one run from the wrong directory says so instead of making an empty database.
_CREATES_DATABASE = ("serve", "migrate")
_KEEP = object()  # a limit option not given


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatq", description="Self-hosted asynchronous chat completions."
    )
    parser.add_argument("--version", action="version", version=f"chatq {chatq.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        help_: str,
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        group: str | None = None,
    ) -> argparse.ArgumentParser:
        """A subcommand with the OPTIONS (or CLIENT_OPTIONS) of its group (by default, its
        own name)."""
        sub = parent.add_parser(name, help=help_, description=help_)
        group = group or name
        for option in (*OPTIONS, *CLIENT_OPTIONS):
            if group in option.commands:
                extra: dict[str, object] = (
                    {"action": "store_const", "const": True}
                    if option.kind is None
                    else {"type": option.kind}
                )
                sub.add_argument(
                    f"--{option.flag}",
                    dest=option.flag,
                    default=None,
                    help=option.help,
                    **extra,  # type: ignore[arg-type]
                )
        return sub

    command("serve", "API and worker in one process (the embedded default)", commands)
    command("api", "the HTTP API alone", commands)
    command("worker", "a worker alone", commands)
    command("migrate", "apply pending database migrations", commands)
    keys = commands.add_parser("keys", help="manage API keys", description="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = command(
        "create", "create a key; its secret is printed once, last", key_commands, "keys"
    )
    create.add_argument("name", help="a name for the key; also its owner unless --owner")
    create.add_argument("--owner", help="owner whose requests the key sees (default: NAME)")
    create.add_argument(
        "--webhook", metavar="URL", help="default webhook of the requests made with this key"
    )
    create.add_argument(
        "--admin", action="store_true", help="an admin key: may read every owner's usage"
    )
    _limit_options(create)
    command("list", "list keys (never their secrets)", key_commands, "keys")
    update = command("update", "change a key's default webhook or its limits", key_commands, "keys")
    update.add_argument("key", help="the key's id (from 'chatq keys list') or name")
    _limit_options(update)
    hook = update.add_mutually_exclusive_group()
    hook.add_argument("--webhook", metavar="URL", help="the new default webhook")
    hook.add_argument("--no-webhook", action="store_true", help="no default webhook from now on")
    revoke = command("revoke", "revoke a key by id", key_commands, "keys")
    revoke.add_argument("key_id", help="the id shown by 'chatq keys list'")

    hooks = commands.add_parser(
        "webhooks",
        help="webhook secrets and deliveries",
        description="webhook secrets and deliveries",
    )
    hook_commands = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    secret = command(
        "secret", "print an owner's signing secret (made on first use)", hook_commands, "webhooks"
    )
    secret.add_argument("owner", help="the owner (a key's owner: see 'chatq keys list')")
    secret.add_argument(
        "--rotate",
        action="store_true",
        help="start a new secret; the old one also signs for [webhooks] signature_overlap_s",
    )
    deliveries = command(
        "deliveries", "list webhook deliveries, newest first", hook_commands, "webhooks"
    )
    deliveries.add_argument("--failed", action="store_true", help="only those given up")
    deliveries.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    replay = command("replay", "deliver an event again, now", hook_commands, "webhooks")
    replay.add_argument("id", help="the webhook-id (msg_...) or the request id")

    usage = command("usage", "requests, tokens and cost per owner, day and model", commands)
    usage.add_argument("--owner", help="only this owner (default: every owner)")
    usage.add_argument(
        "--since",
        type=_date,
        metavar="DATE",
        help=f"from this UTC day, YYYY-MM-DD (default: {USAGE_DAYS - 1} days ago)",
    )
    usage.add_argument(
        "--until", type=_date, metavar="DATE", help="to this UTC day, YYYY-MM-DD (default: today)"
    )
    usage.add_argument(
        "--group-by",
        choices=("day", "model"),
        help="one row per day (every model together) or per model (every day together)",
    )
    _client_commands(command, commands)
    return parser


def _client_commands(command: Any, commands: argparse._SubParsersAction[Any]) -> None:
    """ask, submit, get, wait, cancel, ls and batch run: the client, talking HTTP to a server."""
    ask = command("ask", "ask a model; print the answer as it is generated", commands)
    ask.add_argument("prompt", help="what to ask (the user message)")
    _request_options(ask)
    _json_option(ask, "print the finished request as JSON instead of its text")
    submit = command("submit", "submit a request; print its id", commands)
    submit.add_argument("prompt", nargs="?", help="the user message (or give --file)")
    submit.add_argument(
        "--file",
        metavar="FILE",
        help='a JSON create body ({"request": {...}, ...}) or chat request; - reads stdin',
    )
    _request_options(submit)
    submit.add_argument(
        "--stream", action="store_true", help="publish its text live on its event stream"
    )
    submit.add_argument("--idempotency-key", metavar="KEY", help="a retry with it creates nothing")
    _json_option(submit, "print the created request as JSON instead of its id")
    for name, help_ in (
        ("get", "show a request: its state, then its answer or error"),
        ("wait", "wait until a request has finished, then show it (FAILED: exit 1)"),
        ("cancel", "cancel a request (a finished one is left as it is)"),
    ):
        sub = command(name, help_, commands)
        sub.add_argument("id", help="the request's id")
        _json_option(sub, "print the request as JSON")
    ls = command("ls", "list your requests, newest first", commands)
    ls.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only these: CREATED, IN_PROGRESS, COMPLETED, FAILED (repeat, or A,B)",
    )
    ls.add_argument("--model", help="only this model's")
    ls.add_argument("--limit", type=int, default=20, help="at most this many (20)")
    _json_option(ls, "print the requests as a JSON list")
    batch = commands.add_parser(
        "batch", help="run a JSONL file of requests", description="run a JSONL file of requests"
    )
    batch_commands = batch.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    run = command(
        "run",
        "run every request of a JSONL file, appending results to the output; run it again to "
        "resume",
        batch_commands,
        "batch",
    )
    run.add_argument(
        "input", help='lines of {"custom_id", "body"} (OpenAI Batch) or {"custom_id", "request"}'
    )
    run.add_argument(
        "-o", "--output", required=True, help="results, one OpenAI Batch output line a request"
    )
    run.add_argument(
        "--concurrency", type=int, default=64, metavar="N", help="at most N unfinished at once (64)"
    )
    run.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="S",
        help="when stderr is not a terminal, a progress line every S seconds (5)",
    )


def _request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", metavar="TEXT", help="a system message before the prompt")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="the answer's longest")


def _json_option(parser: argparse.ArgumentParser, help_: str) -> None:
    parser.add_argument("--json", action="store_true", help=help_)


def _limit(value: str) -> int | None:
    """A limit as given on the command line: a count (0: none), or "default"."""
    if value == "default":
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 or 'default': {value!r}")
    return number


def _limit_options(parser: argparse.ArgumentParser) -> None:
    """--max-unfinished and --rpm; not given: keep (update) or the server's default (create)."""
    parser.add_argument(
        "--max-unfinished",
        type=_limit,
        default=_KEEP,
        metavar="N",
        help="at most N of the owner's requests CREATED or IN_PROGRESS when creating with this "
        "key (0: no limit; 'default': [limits] max_unfinished of the server)",
    )
    parser.add_argument(
        "--rpm",
        type=_limit,
        default=_KEEP,
        metavar="N",
        help="at most N requests created with this key a minute (0: no limit; 'default': "
        "[limits] rpm of the server)",
    )


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in CLIENT:
        return _client(args)
    try:
        settings = build_settings(vars(args), os.environ)
        configure_logging(settings.log_level_number, settings.log_format)
        return event_loop.run(_run(args, settings))
    except (ConfigError, UnsupportedDatabase, DatabaseMissing) as exc:
        print(f"chatq: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"chatq: the database is unreachable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _client(args: argparse.Namespace) -> int:
    flags = {
        o.flag: getattr(args, o.flag, None) for o in CLIENT_OPTIONS if args.command in o.commands
    }
    try:
        settings = build_client_settings(flags, os.environ)
    except ConfigError as exc:
        print(f"chatq: {exc}", file=sys.stderr)
        return 2
    # Imported here: the server commands need neither httpx nor rich to start.
    from chatq.client.commands import run

    return run(args, settings)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    must_exist = args.command not in _CREATES_DATABASE
    # Imported here: the other commands (the client's above all) start without FastAPI,
    # uvicorn and the backends, which cost a second of start-up; a worker, without the first
    # two.
    if args.command in ("serve", "api"):
        from chatq.serving import serve

        await serve(settings, with_worker=args.command == "serve", announce=_say)
        return 0
    if args.command == "worker":
        from chatq.wiring import work

        await work(settings, announce=_say)
        return 0
    store = await open_store(
        settings.database_url, pool_size=settings.pool_size, must_exist=must_exist
    )
    try:
        applied = await store.migrate()
        if args.command == "migrate":
            _say(f"applied: {', '.join(applied)}" if applied else "already up to date")
            return 0
        if args.command == "webhooks":
            return await _webhooks(args, store)
        if args.command == "usage":
            return await _usage(args, store)
        return await _keys(args, store)
    finally:
        await store.close()


def _webhook_url(url: str) -> str | None:
    """url if chatq accepts it as a webhook; else None, having said why."""
    try:
        return check_webhook_url(url)
    except InvalidWebhookUrl as exc:
        print(f"chatq: {exc}", file=sys.stderr)
        return None


async def _keys(args: argparse.Namespace, store: Store) -> int:
    if args.keys_command == "create":
        webhook: str | None = None
        if args.webhook is not None and (webhook := _webhook_url(args.webhook)) is None:
            return 2
        limits = {
            name: None if value is _KEEP else value
            for name, value in (("max_unfinished", args.max_unfinished), ("rpm", args.rpm))
        }
        key, secret = await create_key(store, args.name, args.owner, webhook, args.admin, **limits)
        kind = "admin key" if key.admin else "key"
        _say(f"created {kind} {key.id} ({key.name}, owner {key.owner}); the secret is shown once:")
        _say(secret)
        return 0
    if args.keys_command == "update":
        return await _update_key(args, store)
    if args.keys_command == "list":
        keys = await store.list_keys()
        if not keys:
            _say("no keys yet: make one with 'chatq keys create NAME'")
        for key in keys:
            state = "revoked " + _when(key.revoked_at) if key.revoked_at else "active"
            hook = f"  webhook={key.webhook_url}" if key.webhook_url else ""
            admin = "  admin" if key.admin else ""
            own = (("max_unfinished", key.max_unfinished), ("rpm", key.rpm))
            shown = "".join(f"  {n}={v}" for n, v in own if v is not None)
            _say(
                f"{key.id}  {key.name}  owner={key.owner}  created {_when(key.created_at)}  "
                f"{state}{admin}{hook}{shown}"
            )
        return 0
    if await store.revoke_key(args.key_id):
        _say(f"revoked {args.key_id}")
        return 0
    print(f"chatq: no active key with id {args.key_id!r}", file=sys.stderr)
    return 1


async def _update_key(args: argparse.Namespace, store: Store) -> int:
    changes: list[str] = []
    given: tuple[tuple[KeyLimit, object], ...] = (
        ("max_unfinished", args.max_unfinished),
        ("rpm", args.rpm),
    )
    limits = [(name, value) for name, value in given if value is not _KEEP]
    if args.webhook is None and not args.no_webhook and not limits:
        print(
            "chatq: say what to change: --webhook, --no-webhook, --max-unfinished or --rpm",
            file=sys.stderr,
        )
        return 2
    url: str | None = None
    if args.webhook is not None and (url := _webhook_url(args.webhook)) is None:
        return 2
    updated = 0
    if args.webhook is not None or args.no_webhook:
        updated = await store.set_key_webhook(args.key, url)
        changes.append(f"webhook {url}" if url else "no webhook")
    for name, value in limits:
        assert value is None or isinstance(value, int)
        updated = await store.set_key_limit(args.key, name, value)
        changes.append(f"{name} {'default' if value is None else value}")
    if not updated:
        print(f"chatq: no active key with id or name {args.key!r}", file=sys.stderr)
        return 1
    _say(f"updated {updated} key(s) ({args.key}): {', '.join(changes)}")
    return 0


async def _webhooks(args: argparse.Namespace, store: Store) -> int:
    if args.webhooks_command == "secret":
        if args.rotate:
            rotated = await store.rotate_webhook_secret(args.owner)
            _say(f"rotated the signing secret of {args.owner}; the new one:")
            _say(rotated.current)
        else:
            _say((await store.webhook_secrets(args.owner)).current)
        return 0
    if args.webhooks_command == "deliveries":
        found = await store.list_deliveries(args.failed, max(1, args.limit))
        if not found:
            _say("no failed deliveries" if args.failed else "no deliveries yet")
        for d in found:
            next_try = f"  next try {_when(d.next_attempt_at)}" if d.next_attempt_at else ""
            error = f"  last error: {d.last_error}" if d.last_error else ""
            _say(
                f"{d.id}  request {d.request_id}  owner={d.owner}  {d.status.value}  "
                f"{d.attempts} attempt(s)  {d.event_type}  {_when(d.created_at)}  "
                f"{d.url}{next_try}{error}"
            )
        return 0
    if await store.replay_delivery(args.id):
        _say(f"replaying {args.id}: due now")
        return 0
    print(f"chatq: no webhook delivery with id or request id {args.id!r}", file=sys.stderr)
    return 1


async def _usage(args: argparse.Namespace, store: Store) -> int:
    since, until = usage_range(args.since, args.until, time.time())
    if since > until:
        print(f"chatq: --since {since} is after --until {until}", file=sys.stderr)
        return 2
    rows = await store.usage(args.owner, since.isoformat(), until.isoformat(), args.group_by)
    if not rows:
        _say(f"no usage from {since} to {until}")
        return 0
    for line in usage_table(rows, args.owner is None, args.group_by):
        _say(line)
    return 0


def usage_table(rows: Sequence[UsageRow], every_owner: bool, group_by: str | None) -> list[str]:
    """Usage rows as an aligned table, with a total line when there is more than one."""
    heads = [
        *(["owner"] if every_owner else []),
        *(["date"] if group_by != "model" else []),
        *(["model"] if group_by != "day" else []),
    ]
    numbers = ["requests", "prompt", "completion", "total", "cost"]
    lines = [
        [
            *(str(getattr(r, k)) for k in ("owner", "day", "model") if getattr(r, k) is not None),
            str(r.requests),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.total_tokens),
            f"{r.cost:.6f}",
        ]
        for r in rows
    ]
    if len(rows) > 1:
        lines.append(
            [
                "total",
                *([""] * (len(heads) - 1)),
                *(
                    str(sum(getattr(r, f) for r in rows))
                    for f in ("requests", "prompt_tokens", "completion_tokens", "total_tokens")
                ),
                f"{sum(r.cost for r in rows):.6f}",
            ]
        )
    table = [heads + numbers, *lines]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    keys = len(heads)
    return [
        "  ".join(
            cell.ljust(width) if i < keys else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in table
    ]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _say(line: str) -> None:
    print(line, flush=True)
