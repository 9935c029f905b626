"""An OpenAI-compatible upstream whose cost per held connection is near zero: nginx with the
echo module answers every POST /v1/chat/completions after DELAY seconds with one fixed
chat.completion (the one bench/slow_upstream.py sends), for the benches that hold thousands
of calls open at once, where a Python upstream would be the bottleneck.

    apt-get install nginx-light libnginx-mod-http-echo

GET /stats is nginx's stub_status; `in_flight` reads it (the requests being answered, not
counting the stats call itself)."""

from __future__ import annotations

import re
import resource
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from common import Server, free_port, process
from slow_upstream import SHORT, Answer

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
CONFIG = """\
load_module {module};
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {files};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=16384;
        location = /v1/chat/completions {{
            default_type application/json;
            echo_sleep {delay};
            echo -n '{answer}';
        }}
        location = /healthz {{ return 200 "ok"; }}
        location = /stats {{ stub_status; }}
    }}
}}
"""


def missing() -> str | None:
    """What to install for this upstream, or None when it is there."""
    if shutil.which("nginx") is None or not ECHO_MODULE.exists():
        return "apt-get install nginx-light libnginx-mod-http-echo"
    return None


@contextmanager
def nginx_upstream(delay_s: float) -> Iterator[Server]:
    """nginx answering every chat call after delay_s, until the block ends (stopped by its
    own pid: nginx's master, which stops its worker)."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        answer = Answer(SHORT).whole.decode()
        (root / "nginx.conf").write_text(
            CONFIG.format(
                module=ECHO_MODULE,
                files=files,
                connections=max(1024, files - 64),
                root=root,
                port=port,
                delay=f"{delay_s:g}",
                answer=answer,
            )
        )
        argv = ("nginx", "-p", str(root), "-c", str(root / "nginx.conf"))
        with process(*argv, ready=f"http://127.0.0.1:{port}/healthz") as server:
            yield server


_WRITING = re.compile(r"Writing: (\d+)")


def in_flight(url: str) -> int:
    """Calls nginx is answering right now (stub_status's Writing, less this call)."""
    found = _WRITING.search(httpx.get(f"{url}/stats", timeout=10).text)
    if found is None:
        raise RuntimeError("nginx's stub_status has no Writing count")
    return int(found.group(1)) - 1
