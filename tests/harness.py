"""Run the real chatq command line: one-shot commands, and the server as a subprocess."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.pg import temporary_database_sync

LISTENING = "chatq listening on "
WORKER_READY = "chatq worker "


def chatq_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATQ_")}
    env.update(extra)
    return env


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatq", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env=env if env is not None else chatq_env(),
        cwd=cwd,
        check=False,
    )


def create_key(database_url: str, name: str, owner: str | None = None, admin: bool = False) -> str:
    """Create a key with `chatq keys create` (an admin key if admin) and return its secret
    (the last stdout line)."""
    extra = [*(["--owner", owner] if owner else []), *(["--admin"] if admin else [])]
    done = run_cli("keys", "create", name, *extra, "--database", database_url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def database_url(dialect: str, workdir: Path) -> Iterator[str]:
    """A URL to an empty database of the dialect ("sqlite" or "postgres"), removed after."""
    if dialect == "sqlite":
        yield f"sqlite:///{workdir / 'chatq.db'}"
    else:
        with temporary_database_sync() as url:
            yield url


class ChatqServer:
    """`chatq <command>` as a subprocess (serve and api on a free port); stopped by its pid."""

    def __init__(
        self, workdir: Path, *args: str, command: str = "serve", env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.env = chatq_env(**(env or {}))
        self.args = args
        self.command = command
        self.stdout_lines: list[str] = []
        self.stderr_path = workdir / f"chatq-{command}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self, timeout: float = 30) -> ChatqServer:
        self._stderr = self.stderr_path.open("w")
        listens = self.command in ("serve", "api")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatq",
                self.command,
                *(["--port", "0"] if listens else []),
                *self.args,
            ],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=self.env,
        )
        lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, args=(lines,), daemon=True)
        self._pump_thread.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"chatq did not start; log:\n{self.log()}") from None
            if not line:  # stdout closed: the process ended before it was ready
                self.stop()
                raise RuntimeError(f"chatq exited before it was ready; log:\n{self.log()}")
            if line.startswith(LISTENING):
                self.base_url = line[len(LISTENING) :].strip()
                return self
            if not listens and line.startswith(WORKER_READY):
                return self

    def _pump(self, lines: queue.Queue[str]) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            lines.put(line)
        lines.put("")

    @property
    def database(self) -> str:
        """The --database this process was started with."""
        return self.args[self.args.index("--database") + 1]

    def log(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process by pid and wait; kill it if it does not exit in time."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._pump_thread.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode
