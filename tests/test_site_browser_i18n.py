"""The built site in headless Chromium, per language and per screen size.

- Formulas: at 1280 px every display formula fits its column; at 390 px (a
  phone) one that does not scrolls sideways and shows it (shadow and ↔ cue,
  data-overflow set by derive.js, updated when scrolled to the end).
- Inline notation and the punctuation after it stay on one line; code names
  in tables are never cut in two.
- The credit line is visible in the footer of every page, in its language.
- Search: each language searches its own pages, accents folded.
- The 404 page of each language is in that language, its links work, and
  it makes no request that fails (no missing sitemap).

Uses the shared fixtures of tests/browser_support.py (via conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from browser_support import ARTIFACTS, _Watch, site_pages

if TYPE_CHECKING:
    from playwright.sync_api import Page

CREDIT = "Vincent, Objectif Data Science (@ObjectifDataSci)"
CREDIT_WORDS = {"en": "25 posts in French", "fr": "25 messages en français"}
PUNCTUATION = ".,;:!?)"

FORMULAS = """() => [...document.querySelectorAll('.derive-math')]
  .filter(e => e.offsetParent !== null)  /* a formula in a closed tab has no layout */
  .map(e => ({
    label: e.dataset.derive,
    client: e.clientWidth,
    scroll: e.scrollWidth,
    overflow: e.getAttribute('data-overflow'),
    overflowX: getComputedStyle(e).overflowX,
    cue: getComputedStyle(e, '::after').content,
    shadow: getComputedStyle(e).backgroundImage,
    tabindex: e.getAttribute('tabindex'),
  }))"""

LAYOUT = """() => {
  const loose = [], split = [], wrapped = [];
  for (const k of document.querySelectorAll('article .katex')) {
    if (k.closest('.derive-math, .katex-display') || k.parentElement.closest('.katex')) continue;
    const next = k.nextSibling;
    if (next && next.nodeType === 3 && /^[\\u00a0\\u202f]?[.,;:!?)]/.test(next.textContent)
        && !k.parentElement.classList.contains('derive-glue'))
      loose.push(k.textContent.slice(0, 30) + next.textContent.slice(0, 3));
  }
  for (const g of document.querySelectorAll('article .derive-glue')) {
    const lines = new Set([...g.getClientRects()].map(r => Math.round(r.top)));
    if (lines.size > 1) split.push(g.textContent.slice(0, 40));
  }
  for (const c of document.querySelectorAll('article table code')) {
    if (c.offsetParent === null) continue;
    const lines = new Set([...c.getClientRects()].map(r => Math.round(r.top)));
    if (lines.size > 1) wrapped.push(c.textContent);
  }
  const glued = document.querySelectorAll('article .derive-glue').length;
  return {loose, split, wrapped, glued};
}"""


def _lang(path: str) -> str:
    return "fr" if path.startswith("/fr/") else "en"


def test_formulas_fit_the_desktop_and_credit_in_every_footer(built_site: Path, base_url: str, session: tuple[Page, _Watch]) -> None:
    page, watch = session
    paths = site_pages(built_site)
    checked = 0
    for path in paths:
        page.goto(base_url + path, wait_until="load")
        for f in page.evaluate(FORMULAS):
            assert f["scroll"] <= f["client"] + 1, f"{path}: {f['label']} is {f['scroll']} px wide in a {f['client']} px column"
            assert f["overflow"] is None, f"{path}: {f['label']} fits but is marked {f['overflow']}"
            checked += 1
        footer = page.locator(".md-footer .derive-credit__line")
        assert footer.is_visible(), f"{path}: no visible credit line"
        text = footer.inner_text()
        assert CREDIT in text and CREDIT_WORDS[_lang(path)] in text, f"{path}: credit reads {text!r}"
        assert page.locator(".md-footer .derive-credit__posts").count() == 1 or path.rstrip("/").endswith("sources")
    assert checked > 30, f"only {checked} formulas checked"
    assert not watch.outside and not watch.errors, (watch.outside + watch.errors)[:10]


def test_phone_formulas_scroll_with_a_cue_and_nothing_breaks_badly(built_site: Path, base_url: str, session: tuple[Page, _Watch]) -> None:
    page, watch = session
    page.set_viewport_size({"width": 390, "height": 844})
    scrolling = glued = 0
    for path in site_pages(built_site):
        page.goto(base_url + path, wait_until="load")
        page.wait_for_function("document.fonts.status === 'loaded'")
        for f in page.evaluate(FORMULAS):
            if f["scroll"] <= f["client"] + 1:
                assert f["overflow"] is None, f"{path}: {f['label']} fits but is marked"
                continue
            scrolling += 1
            assert f["overflowX"] in ("auto", "scroll"), f"{path}: {f['label']} does not scroll"
            assert f["overflow"] == "start", f"{path}: {f['label']} overflows unmarked ({f['overflow']})"
            assert "↔" in f["cue"], f"{path}: {f['label']} has no ↔ cue ({f['cue']})"
            assert f["shadow"].count("gradient") >= 4, f"{path}: {f['label']} has no edge shadows"
            assert f["tabindex"] == "0", f"{path}: {f['label']} cannot be scrolled from the keyboard"
        layout = page.evaluate(LAYOUT)
        assert not layout["loose"], f"{path}: punctuation not glued to its formula: {layout['loose'][:3]}"
        assert not layout["split"], f"{path}: formula and punctuation on two lines: {layout['split'][:3]}"
        assert not layout["wrapped"], f"{path}: code names cut in a table: {layout['wrapped'][:3]}"
        glued += layout["glued"]
    assert scrolling >= 3 and glued > 50, f"{scrolling} scrolling formulas, {glued} glued"
    # scrolled to its end, a formula says so; the screenshot shows the cue
    page.goto(base_url + "/vanishing/", wait_until="load")
    wide = page.locator('.derive-math[data-derive="jacobian gru"]')
    wide.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    wide.screenshot(path=str(ARTIFACTS / "vanishing-jacobian.phone.png"))
    wide.evaluate("e => { e.scrollLeft = e.scrollWidth; e.dispatchEvent(new Event('scroll')); }")
    page.wait_for_function("""() => document.querySelector('.derive-math[data-derive="jacobian gru"]').dataset.overflow === 'end'""")
    assert not watch.outside and not watch.errors, (watch.outside + watch.errors)[:10]


def _search(page: Page, base_url: str, start: str, word: str) -> tuple[list[str], list[str]]:
    """Type ``word`` in the search box of ``start``: the result paths and
    the highlighted words."""
    page.goto(base_url + start, wait_until="networkidle")  # the index is fetched
    page.click("input.md-search__input")
    page.keyboard.type(word)
    page.wait_for_selector(".md-search-result__item", timeout=15000)
    hrefs = page.eval_on_selector_all(".md-search-result__item a", "els => els.map(e => e.href)")
    marks = page.eval_on_selector_all(".md-search-result mark", "els => els.map(e => e.textContent)")
    return [urlsplit(h).path for h in hrefs], marks


@pytest.mark.parametrize(
    ("start", "word", "lang"),
    [("/fr/gru/", "Hadamard", "fr"), ("/fr/", "oubli", "fr"), ("/", "forget", "en"), ("/gru/", "Hadamard", "en")],
)
def test_search_answers_in_the_language_of_the_page(base_url: str, session: tuple[Page, _Watch], start: str, word: str, lang: str) -> None:
    page, watch = session
    paths, _ = _search(page, base_url, start, word)
    assert paths, f"{word!r} found nothing on {start}"
    assert all(_lang(p) == lang for p in paths), f"{word!r} on {start}: {paths[:6]}"
    assert not watch.outside and not watch.errors, (watch.outside + watch.errors)[:10]


def test_search_folds_accents(base_url: str, session: tuple[Page, _Watch]) -> None:
    page, watch = session
    paths, marks = _search(page, base_url, "/fr/", "evanescent")
    assert paths and all(_lang(p) == "fr" for p in paths), paths[:6]
    assert any(m.lower().startswith("évanescent") for m in marks), f"no 'évanescent' highlighted: {marks[:8]}"
    paths, marks = _search(page, base_url, "/fr/", "évanescent")
    assert any(m.lower().startswith("évanescent") for m in marks), f"the accented query lost its matches: {marks[:8]}"
    assert not watch.outside and not watch.errors, (watch.outside + watch.errors)[:10]


@pytest.mark.parametrize(("path", "lang", "title", "home"), [("/404.html", "en", "Page not found", "/"), ("/fr/404.html", "fr", "Page introuvable", "/fr/")])
def test_404_page_in_its_language(base_url: str, session: tuple[Page, _Watch], path: str, lang: str, title: str, home: str) -> None:
    page, watch = session
    requested: list[str] = []
    page.on("request", lambda r: requested.append(urlsplit(r.url).path))
    page.goto(base_url + path, wait_until="networkidle")
    assert page.get_attribute("html", "lang") == lang
    assert page.title() == f"{title} - derive" and page.inner_text("article h1") == title
    assert CREDIT_WORDS[lang] in page.inner_text(".md-footer .derive-credit__line")
    page.hover(".md-header .md-select")
    menu = page.eval_on_selector_all(".md-header a.md-select__link", "els => els.map(e => [e.hreflang, e.textContent.trim(), new URL(e.href).pathname])")
    assert sorted(menu) == [["en", "English", "/"], ["fr", "Français", "/fr/"]], menu
    links = sorted({urlsplit(h).path for h in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)") if urlsplit(h).hostname == "127.0.0.1"})
    assert home in links and len(links) > 10, links
    for link in links:
        response = page.request.get(base_url + link)
        assert response.ok, f"{path}: link {link} gives {response.status}"
    with page.expect_navigation():
        page.click("a.derive-not-found__home")
    assert urlsplit(page.url).path == home and page.get_attribute("html", "lang") == lang
    assert not [r for r in requested if r.endswith("sitemap.xml")], "the 404 page asks for a sitemap"
    assert not watch.outside and not watch.errors, (watch.outside + watch.errors)[:10]
