"""The dashboard in a real headless Chromium (the distribution's, driven by Playwright), against
a real server: `chatq serve` on SQLite, and `chatq api` + `chatq worker` on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.acceptance.conftest import deployed, module_upstream, write_config
from tests.fakes.upstream import FakeUpstream
from tests.harness import ChatqServer, create_key

__all__ = ["module_upstream"]  # the fixture, shared with the acceptance tests

# The distribution's package (apt-get install chromium; scripts/test installs it), launched
# by path: nothing is downloaded by `playwright install`.
CHROMIUM = Path(os.environ.get("CHATQ_TEST_CHROMIUM", "/usr/bin/chromium"))
# Playwright's own waits, in milliseconds: generous, for two busy cores.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)

_names = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def dashboard(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_upstream: FakeUpstream,
) -> Iterator[ChatqServer]:
    """The server the dashboard is served by: `chatq serve` on SQLite, or `chatq api` and
    `chatq worker` on PostgreSQL; with --access-log, so tests can read what it logged."""
    workdir = tmp_path_factory.mktemp("dashboard")
    config = write_config(workdir / "chatq.toml", module_upstream.base_url)
    with deployed(request.param, workdir, config, "--access-log") as proc:
        yield proc


def new_owner(server: ChatqServer, admin: bool = False) -> tuple[str, str]:
    """A fresh owner and its key, (owner, secret): each test sees only its own requests."""
    owner = f"ui-{next(_names)}-{time.monotonic_ns()}"
    return owner, create_key(server.database, owner, admin=admin)


@pytest.fixture(scope="module")
def shared_key(dashboard: ChatqServer) -> str:
    """One owner's key for the tests that look only at the requests they made (by id), not
    at all the owner has: each key costs a `chatq keys create` process (2 s)."""
    return new_owner(dashboard)[1]


@pytest.fixture(scope="module")
def playwright(dashboard: ChatqServer) -> Iterator[Playwright]:
    """Playwright's sync API, started once the server is up (and stopped before it stops):
    while it is open it runs an event loop in this thread, and the server's set-up and
    clean-up run their own (asyncio.run, for a PostgreSQL database)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium per module and server; each test gets its own context (a fresh
    tab storage)."""
    if not CHROMIUM.exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    # Chromium's sandbox refuses to run as root (as in CI containers).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, dashboard: ChatqServer) -> Iterator[BrowserContext]:
    opened = browser.new_context(base_url=dashboard.base_url)
    opened.set_default_timeout(WAIT_MS)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab; the test fails if a script of the page threw anything it did not catch."""
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    assert errors == [], "the page's scripts threw"


def sign_in(page: Page, key: str) -> None:
    """Sign in on the sign-in page, and land on the request list."""
    page.goto("/ui/signin")
    page.fill("#key", key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url("**/ui")
    page.wait_for_selector("#nav", state="visible")
