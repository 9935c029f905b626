"""Screenshots of the dashboard's main pages into docs/screenshots/, for the README and
docs/dashboard.md: a real `chatq serve` on a throwaway SQLite file, a few requests of the
echo model, and the distribution's Chromium driven by Playwright.

    PYTHONPATH=src:. .venv/bin/python scripts/screenshots.py [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright

from tests.harness import ChatqServer, create_key

OUT = Path(__file__).parents[1] / "docs" / "screenshots"
PATH = "/async/chat/completions"
CONFIG = '[[backends]]\nname = "echo"\ntype = "echo"\nmodels = ["echo", "echo-2"]\n'
SYSTEM = "You are a concise assistant."
PROMPTS = [
    ("echo", "Summarise the meeting notes in three bullet points.", {"team": "ops"}),
    ("echo-2", "Translate 'good morning' into French, German and Italian.", {}),
    ("echo", "Write a haiku about queues: patient lines of work, each one served.", {}),
]


def populate(client: httpx.Client) -> str:
    """A few finished requests, oldest first; the id of the first, to show."""
    ids: list[str] = []
    for model, prompt, metadata in PROMPTS:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        body = {"request": {"model": model, "messages": messages}, "metadata": metadata}
        ids.append(client.post(PATH, json=body, headers={"Prefer": "wait=10"}).json()["id"])
    return ids[0]


def queue(server: ChatqServer, key: str) -> None:
    """Requests that stay CREATED (no worker runs beside a lone chatq api), for the queue."""
    with server.client(key) as client:
        for n in range(3):
            client.post(
                PATH, json={"model": "echo-2", "messages": [{"role": "user", "content": f"{n}"}]}
            )


def shoot(browser: Browser, base: str, key: str, shots: dict[str, str], width: int) -> None:
    """Sign in with key in a window width CSS pixels wide; a PNG of each page in shots."""
    context = browser.new_context(
        base_url=base, viewport={"width": width, "height": 760}, device_scale_factor=1
    )
    page = context.new_page()
    page.goto("/ui/signin")
    page.fill("#key", key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url("**/ui")
    for name, path in shots.items():
        page.goto(path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
        print(OUT / f"{name}.png")
    context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium to drive")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "chatq.toml").write_text(CONFIG)
        database = f"sqlite:///{workdir / 'chatq.db'}"
        options = ("--database", database, "--config", "chatq.toml")
        server = ChatqServer(workdir, *options).start()
        try:
            key = create_key(database, "alice")
            admin = create_key(database, "ops", admin=True)
            with server.client(key) as client:
                shown = populate(client)
        finally:
            server.stop()
        server = ChatqServer(workdir, *options, command="api").start()
        try:
            queue(server, create_key(database, "bob"))
            with sync_playwright() as driver:
                sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
                browser = driver.chromium.launch(executable_path=args.chromium, args=sandbox)
                pages = {
                    "requests": "/ui",
                    "request": f"/ui/requests/{shown}",
                    "new-request": "/ui/new",
                    "usage": "/ui/usage",
                }
                shoot(browser, server.base_url, key, pages, 1100)
                shoot(browser, server.base_url, admin, {"admin": "/ui/admin"}, 1100)
                shoot(browser, server.base_url, key, {"phone": "/ui"}, 390)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
