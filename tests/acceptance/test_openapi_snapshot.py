"""The OpenAPI document is what clients generate code from: it changes only on purpose.

The served /openapi.json is compared, key order included, with the snapshot beside this file,
taken from the server the acceptance tests run (their config names the models it lists).
After a deliberate change to the API, write the new document with:

    CHATQ_WRITE_OPENAPI_SNAPSHOT=1 pytest tests/acceptance/test_openapi_snapshot.py

and review its diff like any other change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from tests.harness import ChatqServer

SNAPSHOT = Path(__file__).with_name("openapi.json")


def canonical(document: object) -> str:
    """The document as text that keeps its key order, one key a line for readable diffs."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def test_the_openapi_document_is_the_snapshot(server: ChatqServer) -> None:
    served = httpx.get(f"{server.base_url}/openapi.json")
    assert served.status_code == 200
    text = canonical(json.loads(served.content))
    if os.environ.get("CHATQ_WRITE_OPENAPI_SNAPSHOT"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), (
        "the OpenAPI document changed; if on purpose, rewrite the snapshot (see this module)"
    )
