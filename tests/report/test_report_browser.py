"""The report in a real browser: Debian's Chromium, headless, driven by Playwright (no browser is downloaded).

The page is opened from disk (``file://``) as an analyst opens it. Class names, captions, sources, the
annotator's name and the title carry HTML and script; none of it may run, the page's own script must run
under its Content-Security-Policy without a console error, every image must load, and the filters and
sorting must work. Without Chromium the test is skipped, unless ``CURATE_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from report_fixtures import CASSETTE, SPRINGER, TENCH, write_rich_report

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("CURATE_REQUIRE_BROWSER") == "1"
VISIBLE_CARDS_JS = """() => [...document.querySelectorAll('.card')].filter(c => c.checkVisibility())
    .map(c => ({cls: c.dataset.class, kind: c.dataset.kind, grouped: !!c.closest('.group')}))"""

INJECTED_JS = """() => ({scripts: document.scripts.length, handlers: [...document.querySelectorAll('*')]
    .flatMap(e => [...e.attributes].filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))})"""


@pytest.fixture
def browser():
    if not CHROMIUM.is_file():
        if REQUIRED:
            pytest.fail(f"CURATE_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("playwright is not installed (pip install -e .[dev])")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, tmp_path: Path):
    """The hostile report open in a tab; ``page.problems`` collects console errors, page errors and any
    request that leaves the report folder."""
    index = write_rich_report(tmp_path / "report", tmp_path / "images")
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.problems = []
    tab.on("console", lambda m: m.type == "error" and tab.problems.append(f"console: {m.text}"))
    tab.on("pageerror", lambda e: tab.problems.append(f"page error: {e}"))
    tab.on("request", lambda r: r.url.startswith((index.parent.as_uri(), "data:"))
           or tab.problems.append(f"request outside the report: {r.url}"))
    tab.goto(index.as_uri())
    tab.wait_for_load_state("load")
    yield tab
    tab.close()


def test_the_report_in_a_browser(page):
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.problems == []  # an injected script, refused by the policy, would be reported here
    assert page.evaluate(INJECTED_JS) == {"scripts": 1, "handlers": []}  # and it is not even in the DOM
    # the page's own script ran: 3 label issues, 2 outliers, 4 near-duplicates, 1 issue of another kind
    assert page.locator("#filter-count").inner_text() == "10 images shown"

    thumbs = page.locator(".card .thumb img")
    assert thumbs.count() == 10
    for i in range(thumbs.count()):  # lazy images load when scrolled to
        thumbs.nth(i).scroll_into_view_if_needed()
        thumbs.nth(i).evaluate("img => img.decode()")
    assert page.evaluate("() => [...document.querySelectorAll('.card .thumb img')].every(i => i.naturalWidth > 0)")
    heatmap = page.locator("#joint-heatmap")
    heatmap.scroll_into_view_if_needed()
    assert heatmap.evaluate("img => img.decode().then(() => img.naturalWidth)") > 300

    page.select_option("#filter-class", TENCH)
    shown = page.evaluate(VISIBLE_CARDS_JS)
    loose = [c for c in shown if not c["grouped"]]
    assert loose and {c["cls"] for c in loose} == {TENCH}
    assert {c["cls"] for c in shown if c["grouped"]} == {TENCH, CASSETTE}  # the one group with a tench, whole
    assert page.locator(".group").nth(1).is_hidden()  # the springer pair
    page.locator("input[name=kind][value=outlier]").uncheck()
    assert page.locator('section[data-section-kind="outlier"]').is_hidden()
    page.select_option("#filter-class", "")
    page.locator("input[name=kind][value=outlier]").check()
    assert len(page.evaluate(VISIBLE_CARDS_JS)) == 10

    page.locator("#classes th button", has_text="label quality").click()
    assert page.locator("#classes tbody tr td:nth-child(2)").all_inner_texts() == [CASSETTE, TENCH, SPRINGER]
    page.locator(f'#classes button.show[data-class="{SPRINGER}"]').click()
    assert page.locator("#filter-class").input_value() == SPRINGER
    assert {c["cls"] for c in page.evaluate(VISIBLE_CARDS_JS) if not c["grouped"]} == {SPRINGER}

    page.select_option("#filter-class", "")
    for element in page.locator(".card, .caption, #classes td, .checks td").all():  # a handler would fire on hover
        element.hover(timeout=5_000)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.problems == []
