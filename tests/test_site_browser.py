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

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from browser_support import _check_page, _switch_language, _Watch, other_language, site_pages

if TYPE_CHECKING:
    from playwright.sync_api import Page


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
