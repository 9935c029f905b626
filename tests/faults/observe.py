"""What a process holds, read from outside it: its open file descriptors and TCP
connections (/proc), and its PostgreSQL sessions (pg_stat_activity), matched to it by the
client ports of its own connections."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

_LISTEN = 0x0A  # a TCP socket's state in /proc/net/tcp


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Connection:
    local_port: int
    remote_port: int
    listening: bool


def tcp_connections(pid: int) -> list[Connection]:
    """The process's TCP sockets, IPv4 and IPv6."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes:
                found.append(
                    Connection(
                        int(local.rsplit(":", 1)[1], 16),
                        int(remote.rsplit(":", 1)[1], 16),
                        int(state, 16) == _LISTEN,
                    )
                )
    return found


def clients_of(pid: int, port: int) -> int:
    """How many clients are connected to the process's port."""
    return sum(1 for c in tcp_connections(pid) if c.local_port == port and not c.listening)


def port_of(url: str) -> int:
    return urlsplit(url).port or 5432


def database_ports(pid: int, database_url: str) -> list[int]:
    """The client ports of the process's connections to the database server."""
    server = port_of(database_url)
    return [c.local_port for c in tcp_connections(pid) if c.remote_port == server]


def sessions_of(pid: int, database_url: str) -> list[dict[str, Any]]:
    """The process's sessions in its PostgreSQL database: backend pid, state ('idle',
    'active', ...), state_change (when it last changed), listener (whether it is chatq's
    LISTEN connection), query (the last one)."""
    ports = database_ports(pid, database_url)

    async def read() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT pid, state, state_change, application_name = 'chatq-listener' AS listener, "
                "query FROM pg_stat_activity "
                "WHERE datname = current_database() AND client_port = ANY($1::int[])",
                ports,
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return asyncio.run(read())


def terminate(database_url: str, backend_pids: list[int]) -> int:
    """pg_terminate_backend, for each backend: how many there were to terminate."""

    async def run() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return sum(
                [await conn.fetchval("SELECT pg_terminate_backend($1)", b) for b in backend_pids]
            )
        finally:
            await conn.close()

    return asyncio.run(run())
