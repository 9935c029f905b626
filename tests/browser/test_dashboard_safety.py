"""The dashboard shows stored strings as text and runs nothing from them; its pages carry a
Content-Security-Policy and have no inline script; they fit a phone and a zoomed window."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.acceptance.conftest import PATH, chat, wait_finished
from tests.browser.conftest import WAIT_MS, new_owner, sign_in
from tests.harness import ChatqServer

# Each would set window.__xss (or add an element) if the page ever treated it as markup.
PAYLOAD = (
    "<script>window.__xss = 'script'</script>"
    "<img src=x onerror=\"window.__xss = 'img'; document.body.append('pwned')\">"
)
PAGES = ["/ui", "/ui/signin", "/ui/new", "/ui/usage", "/ui/admin", "/ui/requests/some-id"]

# Any CSP violation on the page (a blocked inline script, style or handler) is recorded.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def test_stored_strings_are_shown_as_text_and_run_nothing(
    page: Page, dashboard: ChatqServer, shared_key: str
) -> None:
    key = shared_key
    with dashboard.client(key) as client:
        body = {**chat(PAYLOAD), "metadata": {"label": PAYLOAD}}
        request_id = client.post(PATH, json=body).json()["id"]
        done = wait_finished(client, request_id)
    assert done["response"]["choices"][0]["message"]["content"] == PAYLOAD, "echo: the same"
    page.add_init_script(RECORD_VIOLATIONS)
    dialogs: list[str] = []

    def dialog_opened(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dialog_opened)
    sign_in(page, key)
    page.goto(f"/ui/requests/{request_id}")
    expect(page.locator("#answer")).to_have_text(PAYLOAD)  # literally, as text
    expect(page.locator("#messages pre")).to_have_text(PAYLOAD)
    expect(page.locator("#facts")).to_contain_text(PAYLOAD)
    assert page.evaluate("window.__xss") is None, "no payload ran"
    assert page.locator("main img").count() == 0, "no element was made from it"
    assert "pwned" not in page.evaluate("document.body.lastChild.textContent || ''")
    assert dialogs == []
    assert page.evaluate("window.__violations") == [], "nothing even tried to run"


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_a_csp_and_no_inline_script(dashboard: ChatqServer, path: str) -> None:
    response = httpx.get(dashboard.base_url + path)
    assert response.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    found = _Markup()
    found.feed(response.text)
    assert found.scripts and all(src for src, _ in found.scripts), "scripts only by src"
    assert all(not text.strip() for _, text in found.scripts), "no inline script"
    assert found.handlers == [], "no inline event handler"
    assert found.styles == 0, "no inline style"
    assert response.headers["x-content-type-options"] == "nosniff"


class _Markup(HTMLParser):
    """The scripts (src, inline text), on* attributes and style attributes or elements."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[str | None, str]] = []
        self.handlers: list[str] = []
        self.styles = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.handlers += [name for name in names if name.startswith("on")]
        self.styles += ("style" in names) + (tag == "style")
        if tag == "script":
            self.scripts.append((names.get("src"), ""))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            src, text = self.scripts[-1]
            self.scripts[-1] = (src, text + data)


# A phone, and a 1280 x 720 window zoomed to 200 % (which lays the page out in 640 x 360 CSS
# pixels, at twice the device pixels).
VIEWPORTS = {"phone": (375, 700, 3), "zoomed": (640, 360, 2)}


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_pages_fit_a_phone_and_a_zoomed_window(
    browser: Browser, dashboard: ChatqServer, shared_key: str, viewport: str
) -> None:
    width, height, scale = VIEWPORTS[viewport]
    key = shared_key
    with dashboard.client(key) as client:
        long = "w" * 300  # one word, no place to break it
        body = {**chat(long), "metadata": {"label": long}}
        request_id = client.post(PATH, json=body).json()["id"]
        wait_finished(client, request_id)
    context = browser.new_context(
        base_url=dashboard.base_url,
        viewport={"width": width, "height": height},
        device_scale_factor=scale,
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        page.add_init_script(RECORD_VIOLATIONS)
        sign_in(page, key)
        for path, ready in [
            ("/ui", "#requests tbody tr"),
            (f"/ui/requests/{request_id}", "#status.status-completed"),
            ("/ui/new", "#model option"),
            ("/ui/usage", "#chart svg"),
            ("/ui/admin", "#not-admin"),
        ]:
            page.goto(path)
            page.wait_for_selector(ready, state="attached")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} at {width}x{height} scrolls sideways by {overflow}px"
            assert page.evaluate("window.__violations") == [], path
        expect(page.locator("#nav")).to_be_visible()
    finally:
        context.close()


def test_a_request_of_another_owner_is_not_shown(
    page: Page, dashboard: ChatqServer, shared_key: str
) -> None:
    _, theirs = new_owner(dashboard)
    with dashboard.client(theirs) as client:
        request_id = client.post(PATH, json=chat("private")).json()["id"]
    sign_in(page, shared_key)
    page.goto(f"/ui/requests/{request_id}")
    expect(page.locator("#error")).to_have_text(re.compile("no async chat completion request"))
    expect(page.locator("#messages")).to_be_empty()
