"""The review page in a real browser (headless Debian chromium): pick a topic in the tree, accept one item with the
keyboard and reject another with a click, reload and find both shown and stored, undo one; screenshots of the
tree and of the topic go to the screenshot folder. The service is the one a first start gives (the ranker
trained on the sample catalog, decisions in a SQLite file) with an API key, so the page is reached through its
login and its calls carry the login's cookie."""

from __future__ import annotations

import json
from pathlib import Path

from edurank.feedback import FeedbackStore
from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import served
from tests.service.conftest import off_host

TOPIC = "t_en_004"
KEY = "review-key-0123456789abcdef"


def test_a_curator_reviews_a_topic(tmp_path: Path, page, requested: list[str], screenshot_dir: Path) -> None:
    from playwright.sync_api import expect

    database = tmp_path / "feedback.sqlite"
    problems: list[str] = []  # script errors and console errors (a style or script the page's policy refused)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    app = create_app(Settings(artifacts=tmp_path / "artifacts", feedback_db=str(database), background_load=False,
                              api_key=KEY))
    with served(app) as base:
        page.goto(f"{base}/review")
        page.wait_for_url(f"{base}/review/login?next=%2Freview")
        page.fill("input[name=key]", KEY)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{base}/review")
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/review"
        page.screenshot(path=screenshot_dir / "review.png", full_page=True)
        page.fill("#filter", "equivalent")
        topic = page.get_by_role("link", name="Equivalent fractions")
        expect(topic).to_be_visible()  # in a closed branch of the tree, opened by the filter
        expect(page.get_by_role("link", name="Understanding fractions")).to_be_hidden()  # filtered out
        expect(page.locator(".channel:not([hidden])")).to_have_count(1)
        topic.click()
        page.wait_for_url(f"{base}/review/topic/{TOPIC}")

        page.fill("#who", "Ada")
        items = page.locator("#items .item")
        expect(items).to_have_count(10)
        first, second = items.nth(0), items.nth(1)
        page.locator("h1").click()  # out of the name field: keys go to the list again, the first item current
        page.keyboard.press("a")
        expect(first.locator(".state")).to_have_text("accepted")
        second.get_by_role("button", name="Reject").click()
        expect(second.locator(".state")).to_have_text("rejected")
        expect(page.locator("#history tr")).to_have_count(2)
        page.keyboard.press("?")
        expect(page.locator("#help")).to_be_visible()
        page.keyboard.press("Escape")
        page.screenshot(path=screenshot_dir / "review-topic.png", full_page=True)

        page.reload()
        expect(first.locator(".state")).to_have_text("accepted")
        expect(second.locator(".state")).to_have_text("rejected")
        expect(page.locator("#history tr")).to_have_count(2)
        expect(page.locator("#who")).to_have_value("Ada")  # kept in localStorage
        shown = [first.get_attribute("data-content-id"), second.get_attribute("data-content-id")]
        probabilities = [float(item.get_attribute("data-probability")) for item in (first, second)]
        rendered = json.loads(page.locator("#items").get_attribute("data-versions"))  # the models behind the list
        store = FeedbackStore.open(database)
        try:
            current = {d.content_id: d for d in store.current(TOPIC)}
            assert {key: d.decision for key, d in current.items()} == {shown[0]: "accepted", shown[1]: "rejected"}
            for rank, (content_id, probability) in enumerate(zip(shown, probabilities, strict=True), start=1):
                stored = current[content_id]
                assert (stored.who, stored.rank, stored.source) == ("Ada", rank, "review")
                assert stored.probability == probability and stored.versions == rendered and rendered["ranker"]

            first.locator(".title").click()  # make it current, then undo its decision with the keyboard
            page.keyboard.press("u")
            expect(first.locator(".state")).to_have_text("undecided")
            expect(page.locator("#history tr.undone")).to_have_count(1)
            assert [d.content_id for d in store.current(TOPIC)] == [shown[1]]
        finally:
            store.close()
    assert off_host(requested) == [] and problems == []
    assert any(url.startswith(f"{base}/static/review/") for url in requested)  # its own script and styles
