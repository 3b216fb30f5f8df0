"""What the browser tests share: a 127.0.0.1 server for the built site,
headless Debian Chromium driven by playwright, and a watch on requests
outside 127.0.0.1 and console errors.

The fixtures (``base_url``, ``browser``, ``session``) are registered in
``conftest.py``; a browser test file just asks for them.
"""


from __future__ import annotations

import functools
import importlib.util
import os
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


