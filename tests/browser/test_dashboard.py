"""The dashboard at /ui in a real browser: sign in, submit, watch the answer arrive, filter,
cancel, delete, sign out; the admin view; what it shows is text, never markup."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.acceptance.conftest import PATH, chat, wait_finished, wait_started
from tests.browser.conftest import new_owner, sign_in
from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import ChatqServer

# Records every text the answer box shows, from before the page's own scripts run.
RECORD_ANSWERS = """
window.__answers = [];
new MutationObserver(() => {
  const answer = document.getElementById("answer");
  const text = answer ? answer.textContent : "";
  if (text && window.__answers[window.__answers.length - 1] !== text) window.__answers.push(text);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_sign_in_submit_watch_the_answer_arrive_and_sign_out(
    page: Page, dashboard: ChatqServer, module_upstream: FakeUpstream
) -> None:
    words = "one two three four five six seven eight"
    module_upstream.rule(words, Reply(token_delay_s=0.25))
    _, key = new_owner(dashboard)
    page.add_init_script(RECORD_ANSWERS)
    sign_in(page, key)
    assert key not in page.url

    page.click("nav >> text=New request")
    expect(page.locator("#model option")).to_contain_text(["fake-model", "echo"])
    page.select_option("#model", "fake-model")
    page.fill("#prompt", words)
    expect(page.locator("#stream")).to_be_checked()
    page.click("#new-request button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/requests/[0-9a-f-]+$"))

    final = f"upstream: {words}"
    expect(page.locator("#answer")).to_have_text(final)
    expect(page.locator("#status")).to_have_text("COMPLETED")
    expect(page.locator("#messages")).to_contain_text(words)
    expect(page.locator("#facts")).to_contain_text("Attempts")
    seen: list[str] = page.evaluate("window.__answers")
    partial = [text for text in seen if text != final]
    assert partial, f"the answer appeared piece by piece, not at once: {seen}"
    assert all(final.startswith(text) for text in partial), seen

    # The list shows it, newest first; the request page is one click away.
    page.click("nav >> text=Requests")
    expect(page.locator("#requests tbody tr")).to_have_count(1)
    expect(page.locator("#requests tbody tr").first).to_contain_text("COMPLETED")

    assert page.context.cookies() == [], "the key is never a cookie"
    assert page.evaluate("sessionStorage.getItem('chatq.key')") == key
    page.click("#sign-out")
    page.wait_for_url("**/ui/signin")
    assert page.evaluate("sessionStorage.getItem('chatq.key')") is None, "signed out: gone"
    page.goto("/ui")
    page.wait_for_url("**/ui/signin")  # no key, no list
    assert key not in dashboard.log(), "the key is in no log line"


def test_a_refused_key_is_not_kept(page: Page) -> None:
    page.goto("/ui/signin")
    page.fill("#key", "cq-not-a-key")
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#error")).to_have_text("That key was not accepted.")
    assert page.evaluate("sessionStorage.length") == 0


def test_filters_by_status_and_model(
    page: Page, dashboard: ChatqServer, module_upstream: FakeUpstream
) -> None:
    module_upstream.rule("refuse me", Reply(status=400, json_body={"error": "no"}))
    _, key = new_owner(dashboard)
    with dashboard.client(key) as client:
        ids = {
            body["request"]["messages"][0]["content"]: client.post(PATH, json=body).json()["id"]
            for body in (
                chat("an echo"),
                chat("upstream ok", "fake-model"),
                chat("refuse me", "fake-model"),
            )
        }
        for request_id in ids.values():
            wait_finished(client, request_id)
    sign_in(page, key)
    rows = page.locator("#requests tbody tr")
    expect(rows).to_have_count(3)

    page.select_option("#filter-model", "echo")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", ids["an echo"])
    assert "model=echo" in page.url, "the filters are in the address, to share or reload"

    page.select_option("#filter-model", "")
    page.select_option("#filter-status", "FAILED")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", ids["refuse me"])

    page.select_option("#filter-model", "fake-model")
    page.select_option("#filter-status", "COMPLETED")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", ids["upstream ok"])
    page.reload()
    expect(rows).to_have_count(1)  # the filters came back from the address
    expect(page.locator("#filter-status")).to_have_value("COMPLETED")


def test_the_list_shows_status_changes_live(
    page: Page, dashboard: ChatqServer, shared_key: str, module_upstream: FakeUpstream
) -> None:
    module_upstream.rule("watch me in the list", Reply(delay_s=60))
    key = shared_key
    with dashboard.client(key) as client:
        held = client.post(PATH, json=chat("watch me in the list", "fake-model", stream=True))
        request_id = held.json()["id"]
        sign_in(page, key)
        row = page.locator(f'#requests tbody tr[data-id="{request_id}"]')
        expect(row).to_contain_text("IN_PROGRESS")
        client.post(f"{PATH}/{request_id}/cancel")
        expect(row).to_contain_text("FAILED")  # no reload: the row watches its event stream


def test_cancel_a_slow_request_then_delete_it(
    page: Page, dashboard: ChatqServer, module_upstream: FakeUpstream
) -> None:
    # A streamed call that holds for a minute before its first token: it is stopped as soon
    # as the worker closes the connection.
    module_upstream.rule("take your time", Reply(delay_s=60))
    _, key = new_owner(dashboard)
    sign_in(page, key)
    page.goto("/ui/new")
    page.select_option("#model", "fake-model")
    page.fill("#prompt", "take your time")
    page.click("#new-request button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/requests/[0-9a-f-]+$"))
    request_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#status")).to_have_text("IN_PROGRESS")
    expect(page.locator("#delete")).to_be_disabled()  # unfinished: cancel it first

    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("FAILED")
    expect(page.locator("#failure")).to_have_text("cancelled by the client")
    expect(page.locator("#cancel")).to_be_disabled()

    page.click("#delete")
    page.wait_for_url("**/ui")
    expect(page.locator("#empty")).to_be_visible()
    with dashboard.client(key) as client:
        assert client.get(f"{PATH}/{request_id}").status_code == 404


def test_an_admin_key_sees_the_whole_server_and_no_other_key_does(
    page: Page, dashboard: ChatqServer, module_upstream: FakeUpstream
) -> None:
    module_upstream.rule("hold for the admin", Reply(delay_s=60))
    owner, key = new_owner(dashboard)
    with dashboard.client(key) as client:
        wait_finished(client, client.post(PATH, json=chat("counted")).json()["id"])
        held = client.post(PATH, json=chat("hold for the admin", "fake-model", stream=True))
        held_id = held.json()["id"]
        wait_started(client, held_id)
    sign_in(page, key)
    expect(page.locator("#nav-admin")).to_be_hidden()
    page.goto("/ui/admin")
    expect(page.locator("#not-admin")).to_be_visible()
    expect(page.locator("#admin-panels")).to_be_hidden()
    page.click("#sign-out")

    sign_in(page, new_owner(dashboard, admin=True)[1])
    page.click("#nav-admin")
    expect(page.locator("#admin-panels")).to_be_visible()
    mine = page.locator("#owners tbody tr", has_text=owner)
    expect(mine).to_have_count(1)
    expect(mine.locator("td").nth(1)).to_have_text("echo")
    expect(mine.locator("td").nth(2)).to_have_text("1")
    running = page.locator("#queue tbody tr", has_text="IN_PROGRESS").filter(has_text="fake-model")
    expect(running).to_have_count(1)  # every owner's, this one's held request among them
    with dashboard.client(key) as client:
        client.post(f"{PATH}/{held_id}/cancel")
        assert wait_finished(client, held_id)["status"] == "FAILED"


def test_usage_chart_shows_the_days_used(page: Page, dashboard: ChatqServer) -> None:
    _, key = new_owner(dashboard)
    with dashboard.client(key) as client:
        for n in range(2):
            wait_finished(client, client.post(PATH, json=chat(f"use {n}")).json()["id"])
        today = client.get("/usage", params={"group_by": "day"}).json()["data"][0]["date"]
    sign_in(page, key)
    page.click("nav >> text=Usage")
    bars = page.locator("#chart svg rect.bar")
    expect(bars).to_have_count(30)
    expect(page.locator(f'#chart rect[data-day="{today}"] title')).to_have_text(
        f"{today}: 2 requests"
    )
    expect(page.locator("#usage-table tbody tr")).to_have_count(1)
    expect(page.locator("#usage-table tbody")).to_contain_text("echo")
