"""The command line: chatq serve | api | worker | migrate | keys create|list|revoke."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from chatq.config import ENV_TWINS, ConfigError, Settings, build_settings
from chatq.keys import create_key
from chatq.service import serve, work
from chatq.store import Store, StoreUnavailable, UnsupportedDatabase, open_store


def _add(parser: argparse.ArgumentParser, flag: str, help_: str, **kwargs: object) -> None:
    parser.add_argument(
        f"--{flag}",
        default=None,
        help=f"{help_} (env: {ENV_TWINS[flag]})",
        **kwargs,  # type: ignore[arg-type]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatq", description="Self-hosted asynchronous chat completions."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_: str, *, http: bool = False, worker: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        _add(sub, "database", "database URL: sqlite:///chatq.db (default) or postgresql://...")
        _add(sub, "config", "TOML config file with [[backends]] and [worker]")
        if http:
            _add(sub, "host", "address to listen on (default 127.0.0.1)")
            _add(sub, "port", "port to listen on (default 8000)", type=int)
        if worker:
            _add(sub, "concurrency", "jobs a worker runs at once (default 256)", type=int)
        return sub

    command("serve", "API and worker in one process (the embedded default)", http=True, worker=True)
    command("api", "the HTTP API alone", http=True)
    command("worker", "a worker alone", worker=True)
    command("migrate", "apply pending database migrations")
    keys = command("keys", "manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def key_command(name: str, help_: str) -> argparse.ArgumentParser:
        sub = key_commands.add_parser(name, help=help_, description=help_)
        _add(sub, "database", "database URL")
        _add(sub, "config", "TOML config file")
        return sub

    create = key_command("create", "create a key; its secret is printed once, last")
    create.add_argument("name", help="a name for the key; also its owner unless --owner")
    create.add_argument("--owner", help="owner whose requests the key sees (default: NAME)")
    key_command("list", "list keys (never their secrets)")
    revoke = key_command("revoke", "revoke a key by id")
    revoke.add_argument("key_id", help="the id shown by 'chatq keys list'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = build_settings(vars(args), os.environ)
        return asyncio.run(_run(args, settings))
    except (ConfigError, UnsupportedDatabase) as exc:
        print(f"chatq: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"chatq: the database is unreachable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in ("serve", "api"):
        await serve(settings, with_worker=args.command == "serve", announce=_say)
        return 0
    if args.command == "worker":
        await work(settings, announce=_say)
        return 0
    store = await open_store(settings.database_url, pool_size=settings.pool_size)
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
        for key in await store.list_keys():
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
