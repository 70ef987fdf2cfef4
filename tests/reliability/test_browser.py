"""The search page in a real browser: Playwright driving Debian's chromium.

Open the page of a served index at phone width, type a query, see hits as
their own indexed pictures (loaded from the app) with score and caption, change
k, see the message for an empty query and a bad request's message.
Screenshots go to ``$TEST_ARTIFACTS`` (default: the test's tmp directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.served import serving

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (make data-packages installs it)",
    ),
]


def test_search_page_at_phone_width(served_index, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the dev extra")
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    with serving(served_index, "--max-k", "20") as (url, _), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('k').max === '20'")
            assert page.input_value("#k") == "10"  # default_k from /limits

            page.fill("#q", "a happy cat")
            page.press("#q", "Enter")
            page.wait_for_selector(".hit")
            hits = page.locator(".hit")
            assert hits.count() == 10
            first = hits.nth(0)
            assert first.locator(".caption").inner_text().strip()
            # every hit shows its own picture, served from the index directory, loaded
            page.wait_for_function(
                "[...document.querySelectorAll('.hit img')].every((i) => i.complete)"
            )
            sources = page.eval_on_selector_all(".hit img", "(s) => s.map((i) => i.src)")
            widths = page.eval_on_selector_all(".hit img", "(s) => s.map((i) => i.naturalWidth)")
            assert len(sources) == 10 and all(width > 0 for width in widths), widths
            assert all("/pictures/" in source for source in sources)
            assert len(set(sources)) == 10  # each hit its own image
            assert "score" in first.locator(".meta").inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no side scroll
            page.screenshot(path=str(artifacts / "search_page_phone.png"), full_page=True)

            page.fill("#k", "3")
            page.click("button")
            page.wait_for_function("document.querySelectorAll('.hit').length === 3")
            assert page.inner_text("#error") == ""

            for empty in ("", "   "):
                page.fill("#q", empty)
                page.click("button")
                page.wait_for_function("document.getElementById('error').textContent !== ''")
                assert page.inner_text("#error").startswith("Type something to search for")
                assert page.locator(".hit").count() == 0
            page.screenshot(path=str(artifacts / "search_page_empty.png"))

            page.fill("#q", "a happy cat")
            page.fill("#k", "500")
            page.click("button")
            page.wait_for_function("document.getElementById('error').textContent !== ''")
            assert page.inner_text("#error") == "k: Input should be less than or equal to 20"
            assert page.locator(".hit").count() == 0
            page.screenshot(path=str(artifacts / "search_page_error.png"))
        finally:
            browser.close()
