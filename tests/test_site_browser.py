"""The built site in headless Chromium, served from 127.0.0.1 only.

Every page in both languages: math typeset by KaTeX with its stylesheet and
fonts, no KaTeX error, no raw TeX in the text, no request to another host,
no console error, and a language switcher that lands on the same page in
the other language. Search finds a French word on the French site and an
English word on the English site. Screenshots of the GRU page go to
test-artifacts/.

Debian's chromium is driven by the playwright package (no browser
download). Without /usr/bin/chromium the tests are skipped, unless CI=true.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Request, Route

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
RAW_TEX = ("\\frac", "$$", "\\(", "\\)", "\\[", "\\begin{", "\\end{", "\\odot", "\\sigma")

# What a page tells about itself once loaded; `.katex` elements are left
# out of the text, like code, where TeX or a dollar may legitimately appear.
PAGE_STATE = """async () => {
  await document.fonts.ready;
  const katex = document.querySelector('.katex');
  const mathml = document.querySelector('.katex-mathml');
  const body = document.body.cloneNode(true);
  body.querySelectorAll('.katex, pre, code, script, style').forEach(e => e.remove());
  const fonts = [...document.fonts].filter(f => f.family.replace(/"/g, '').startsWith('KaTeX'));
  return {
    katex: document.querySelectorAll('.katex').length,
    errors: document.querySelectorAll('.katex-error').length,
    fontFamily: katex ? getComputedStyle(katex).fontFamily : '',
    mathmlPosition: mathml ? getComputedStyle(mathml).position : '',
    fontsLoaded: fonts.filter(f => f.status === 'loaded').map(f => f.family),
    fontsFailed: fonts.filter(f => f.status === 'error').map(f => f.family),
    text: body.textContent,
  };
}"""


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def base_url(built_site: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built_site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        _skip_or_fail("the playwright package is missing: pip install -e '.[test]'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class _Watch:
    """Requests outside 127.0.0.1 (blocked and recorded), console errors."""

    def __init__(self, context: BrowserContext) -> None:
        self.outside: list[str] = []
        self.errors: list[str] = []
        context.route("**/*", self._route)
        context.on("request", lambda request: self._outside(request.url))

    def _outside(self, url: str) -> bool:
        parts = urlsplit(url)
        outside = parts.scheme not in ("data", "blob", "about") and parts.hostname != "127.0.0.1"
        if outside and url not in self.outside:
            self.outside.append(url)
        return outside

    def _route(self, route: Route) -> None:
        if self._outside(route.request.url):
            route.abort()
        else:
            route.continue_()

    def _failed(self, request: Request) -> None:
        # a request cut short by the next navigation is not a failure of the site
        if request.failure != "net::ERR_ABORTED" or urlsplit(request.url).hostname != "127.0.0.1":
            self.errors.append(f"failed {request.url} {request.failure}")

    def attach(self, page: Page) -> None:
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"{page.url}: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: r.status >= 400 and self.errors.append(f"{page.url}: {r.status} {r.url}"))


@pytest.fixture
def session(browser: Browser) -> Iterator[tuple[Page, _Watch]]:
    """A fresh browser context (its own watch) for each test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    watch = _Watch(context)
    page = context.new_page()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        context.close()


def site_pages(site: Path) -> list[str]:
    """The URL path of every page of both languages ('/', '/gru/', '/fr/gru/'…)."""
    paths = []
    for index in sorted(site.rglob("index.html")):
        rel = index.parent.relative_to(site).as_posix()
        if rel.startswith(("assets", "search")):
            continue
        paths.append("/" if rel == "." else f"/{rel}/")
    return paths


def other_language(path: str) -> str:
    return path[3:] if path.startswith("/fr/") else "/fr" + path


def _check_page(page: Page, site: Path, path: str) -> int:
    """Check the loaded page ``path``; returns how many formulas it shows."""
    state = page.evaluate(PAGE_STATE)
    static_katex = (site / path.strip("/") / "index.html").read_text(encoding="utf-8").count('class="katex"')
    assert state["katex"] == static_katex, f"{path}: {state['katex']} formulas shown, {static_katex} built"
    assert state["errors"] == 0, f"{path}: .katex-error"
    leftovers = [tex for tex in RAW_TEX if tex in state["text"]]
    assert not leftovers, f"{path}: raw TeX {leftovers} in the text"
    if state["katex"]:
        assert "KaTeX_Main" in state["fontFamily"], f"{path}: KaTeX CSS not applied ({state['fontFamily']})"
        assert state["mathmlPosition"] == "absolute", f"{path}: KaTeX CSS not applied to the MathML copy"
        assert "KaTeX_Main" in state["fontsLoaded"], f"{path}: KaTeX fonts not loaded: {state['fontsLoaded']}"
        assert not state["fontsFailed"], f"{path}: fonts failed: {state['fontsFailed']}"
    if path in ("/gru/", "/fr/gru/"):
        assert state["katex"] > 0, f"{path} shows no formula"
        ARTIFACTS.mkdir(exist_ok=True)
        lang = "fr" if path.startswith("/fr/") else "en"
        page.screenshot(path=str(ARTIFACTS / f"gru.{lang}.png"), full_page=True)
    return state["katex"]


def _switch_language(page: Page, lang: str, wait_until: str) -> str:
    """Click the header's language menu entry ``lang``; the new URL path."""
    page.hover(".md-header .md-select")  # the menu opens on hover
    with page.expect_navigation(wait_until=wait_until):
        page.click(f'.md-header a.md-select__link[hreflang="{lang}"]')
    assert page.get_attribute("html", "lang") == lang or wait_until == "commit"
    return urlsplit(page.url).path


def test_every_page_in_both_languages(built_site: Path, base_url: str, session: tuple[Page, _Watch]) -> None:
    """Each English page, then its French twin reached with the language
    menu, then back to English with the menu."""
    page, watch = session
    paths = site_pages(built_site)
    english = [p for p in paths if not p.startswith("/fr/")]
    assert "/gru/" in english and sorted(paths) == sorted(english + [other_language(p) for p in english])
    with_math = 0
    for path in english:
        # scripts at the end of <body> wait for the stylesheets, and the
        # page state waits for the fonts: DOMContentLoaded is enough
        response = page.goto(base_url + path, wait_until="domcontentloaded")
        assert response is not None and response.ok, path
        with_math += _check_page(page, built_site, path) > 0
        french = _switch_language(page, "fr", "domcontentloaded")
        assert french == other_language(path), f"the menu took {path} to {french}"
        with_math += _check_page(page, built_site, french) > 0
        back = _switch_language(page, "en", "commit")
        assert back == path, f"the menu took {french} to {back}"
    assert with_math >= 2
    page.wait_for_timeout(500)  # let late requests of the last page show up
    assert not watch.outside, f"requests outside 127.0.0.1: {sorted(set(watch.outside))[:10]}"
    assert not watch.errors, "console errors:\n" + "\n".join(watch.errors[:10])


def _distinct_word(mine: str, theirs: str, pattern: str) -> str:
    """A word of ``mine`` that ``theirs`` lacks (so a hit proves the language)."""
    others = set(re.findall(r"\w+", theirs.lower()))
    words = [w for w in re.findall(pattern, mine) if w.lower() not in others]
    assert words, f"no word matching {pattern!r} only in this language"
    return max(sorted(set(words)), key=len)


def _article_text(page: Page, url: str) -> str:
    """The page's prose: what the search index holds (no math, figure or code)."""
    page.goto(url, wait_until="load")
    return page.evaluate(
        """() => {
      const article = document.querySelector('article').cloneNode(true);
      article.querySelectorAll('.katex, .derive-math, .derive-figure, pre, code').forEach(e => e.remove());
      return article.textContent;
    }"""
    )


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_search_finds_a_word_of_the_language(base_url: str, session: tuple, lang: str) -> None:
    page, watch = session
    french = _article_text(page, base_url + "/fr/gru/")
    english = _article_text(page, base_url + "/gru/")
    if lang == "fr":  # a French word with an accent, absent from the English page
        word = _distinct_word(french, english, r"\b\w*[éèêàùç]\w*\b")
        start = base_url + "/fr/gru/"
    else:
        word = _distinct_word(english, french, r"\b[a-z]{6,}\b")
        start = base_url + "/gru/"
    page.goto(start, wait_until="networkidle")  # the search index is fetched
    page.click("input.md-search__input")
    page.keyboard.type(word)
    page.wait_for_selector(".md-search-result__item", timeout=15000)
    hrefs = page.eval_on_selector_all(".md-search-result__item a", "els => els.map(e => e.href)")
    in_lang = [h for h in hrefs if ("/fr/" in urlsplit(h).path) == (lang == "fr")]
    assert in_lang, f"searching {word!r} on the {lang} site found only {hrefs[:5]}"
    assert not watch.outside and not watch.errors, watch.errors[:10] + watch.outside[:10]
