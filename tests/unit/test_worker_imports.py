"""`chatq worker` builds no HTTP side and imports none: what it runs (chatq.wiring.work)
loads neither FastAPI, Starlette, uvicorn nor the API's modules."""

from __future__ import annotations

import subprocess
import sys


def test_the_worker_wiring_imports_no_http_server() -> None:
    probe = (
        "import sys, chatq.wiring\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'uvicorn', 'jinja2') or m.startswith('chatq.api')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
    # The probe sees what it should: the API's wiring does load them.
    probe = probe.replace("chatq.wiring", "chatq.serving")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "fastapi" in done.stdout and "chatq.api.app" in done.stdout, done.stdout
