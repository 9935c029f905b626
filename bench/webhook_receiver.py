"""A webhook receiver for the benches: answers every POST with 204 at once and remembers when
each event arrived.

aiohttp (its C parser), so that its own cost stays small next to the chatq processes on the
same cores. POST /hook records (time.time() on arrival, the webhook-id header, data.id of the
body); GET /received gives them all as JSON; GET /healthz answers at once.

    python bench/webhook_receiver.py PORT
"""

from __future__ import annotations

import json
import sys
import time

from aiohttp import web

received: list[tuple[float, str, str]] = []


async def hook(request: web.Request) -> web.Response:
    arrived = time.time()
    body = json.loads(await request.read())
    received.append((arrived, request.headers.get("webhook-id", ""), str(body["data"]["id"])))
    return web.Response(status=204)


async def all_received(_: web.Request) -> web.Response:
    return web.json_response(received)


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.add_routes(
        [web.post("/hook", hook), web.get("/received", all_received), web.get("/healthz", healthz)]
    )
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
