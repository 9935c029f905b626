"""The command line: chatq serve | api | worker | migrate | keys create|list|revoke."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import chatq
from chatq.config import OPTIONS, ConfigError, Settings, build_settings
from chatq.keys import create_key
from chatq.store import (
    DatabaseMissing,
    Store,
    StoreUnavailable,
    UnsupportedDatabase,
    open_store,
)
from chatq.wiring import serve, work

# Commands that may create the database; the others refuse a SQLite file that is not there,
# so that one run from the wrong directory says so instead of making an empty database.
_CREATES_DATABASE = ("serve", "migrate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatq", description="Self-hosted asynchronous chat completions."
    )
    parser.add_argument("--version", action="version", version=f"chatq {chatq.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_: str, parent: argparse._SubParsersAction[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_, description=help_)
        group = "keys" if parent is not commands else name
        for option in OPTIONS:
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
    create = command("create", "create a key; its secret is printed once, last", key_commands)
    create.add_argument("name", help="a name for the key; also its owner unless --owner")
    create.add_argument("--owner", help="owner whose requests the key sees (default: NAME)")
    command("list", "list keys (never their secrets)", key_commands)
    revoke = command("revoke", "revoke a key by id", key_commands)
    revoke.add_argument("key_id", help="the id shown by 'chatq keys list'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = build_settings(vars(args), os.environ)
        _configure_logging(settings)
        return asyncio.run(_run(args, settings))
    except (ConfigError, UnsupportedDatabase, DatabaseMissing) as exc:
        print(f"chatq: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"chatq: the database is unreachable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level_number,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # uvicorn's start-up lines repeat what chatq says itself (the listen address, once);
    # its warnings and errors still show.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, settings.log_level_number))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    must_exist = args.command not in _CREATES_DATABASE
    if args.command in ("serve", "api"):
        await serve(settings, with_worker=args.command == "serve", announce=_say)
        return 0
    if args.command == "worker":
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
        return await _keys(args, store)
    finally:
        await store.close()


async def _keys(args: argparse.Namespace, store: Store) -> int:
    if args.keys_command == "create":
        key, secret = await create_key(store, args.name, args.owner)
        _say(f"created key {key.id} ({key.name}, owner {key.owner}); the secret is shown once:")
        _say(secret)
        return 0
    if args.keys_command == "list":
        keys = await store.list_keys()
        if not keys:
            _say("no keys yet: make one with 'chatq keys create NAME'")
        for key in keys:
            state = "revoked " + _when(key.revoked_at) if key.revoked_at else "active"
            _say(
                f"{key.id}  {key.name}  owner={key.owner}  created {_when(key.created_at)}  {state}"
            )
        return 0
    if await store.revoke_key(args.key_id):
        _say(f"revoked {args.key_id}")
        return 0
    print(f"chatq: no active key with id {args.key_id!r}", file=sys.stderr)
    return 1


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _say(line: str) -> None:
    print(line, flush=True)
