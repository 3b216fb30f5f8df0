"""The built site, language by language (no browser: the written HTML and files).

- Generated figures and tables are in the page's language: every French page
  shows the French rendering of each diagram, plot and table, not the English
  one (a hook that always passed "en" would show English ones).
- The language menu names each language in itself ("English", "Français"),
  on every page and on the 404 pages.
- One search index per language, each holding only its pages.
- A 404 page per language, in that language, whose links lead to pages that
  exist, and no alternate link that makes the theme fetch a sitemap.
- The credit line, in the page's language, in the footer of every page, with
  the posts of the thread the page covers; the sources page cites the works.
- Each navigation label is the title of its page.
- Inline notation followed by punctuation is glued to it.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from conftest import require_extra

yaml = require_extra("yaml", "docs")

import derive  # noqa: E402
from derive.site import credit  # noqa: E402
from derive.site.directives import Sources, expand  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# each language's name in itself: a fact, not read from mkdocs.yml (a swap there must fail)
NATIVE_NAMES = {"en": "English", "fr": "Français"}
CREDIT_WORDS = {"en": "posts in French", "fr": "messages en français"}
FIGURE = re.compile(r'<div class="derive-figure" data-derive="(?P<label>[^"]*)">(?P<svg>.*?</svg>)\s*</div>', re.S)
SVG_WORDS = re.compile(r"<(title|desc|text)\b[^>]*>(.*?)</\1>", re.S)


def _mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - a safe loader


def sources_of(lang: str) -> list[Path]:
    """The Markdown sources of language ``lang`` (page.md, page.fr.md)."""
    pages = sorted(DOCS.glob("*.md"))
    if lang == "en":
        return [p for p in pages if p.name.count(".") == 1]
    return [p for p in pages if p.name.endswith(f".{lang}.md")]


def built(site: Path, source: Path) -> Path:
    name, _, lang = source.name.removesuffix(".md").partition(".")
    prefix = site / lang if lang else site
    return prefix / "index.html" if name == "index" else prefix / name / "index.html"


def all_pages(site: Path) -> list[tuple[str, Path]]:
    return [(lang, built(site, s)) for lang in NATIVE_NAMES for s in sources_of(lang)]


def svg_words(svg: str) -> list[str]:
    """What a figure says in words: its title, description and labels."""
    return [" ".join(html.unescape(re.sub(r"<[^>]*>", "", m[2])).split()) for m in SVG_WORDS.finditer(svg)]


def table_headers(markdown: str) -> list[tuple[str, ...]]:
    """The header rows of the Markdown tables in ``markdown`` (cells without math)."""
    lines = markdown.split("\n")
    heads = []
    for line, below in zip(lines, lines[1:]):
        if line.lstrip().startswith("|") and re.match(r"^\s*\|[-:| ]+\|\s*$", below):
            cells = tuple(c.strip() for c in line.strip().strip("|").split("|"))
            heads.append(tuple(c for c in cells if c and "$" not in c and "`" not in c))
    return heads


def th_texts(page_html: str) -> set[str]:
    return {" ".join(html.unescape(re.sub(r"<[^>]*>", "", t)).split()) for t in re.findall(r"<th[^>]*>(.*?)</th>", page_html, re.S)}


# -- generated content in the page's language ------------------------------------
def test_french_pages_show_french_figures_and_tables(built_site: Path) -> None:
    """Each figure and table a directive makes for a French page is the
    French rendering; where the English one differs, it is not there."""
    figures = tables = 0
    for source in sources_of("fr"):
        markdown = source.read_text(encoding="utf-8")
        if "{{ derive:" not in markdown:
            continue
        page = built(built_site, source).read_text(encoding="utf-8")
        sources = Sources(DOCS)
        french = expand(markdown, page=source.name, lang="fr", sources=sources)
        english = expand(markdown, page=source.name, lang="en", sources=sources)
        shown = {m["label"]: svg_words(m["svg"]) for m in FIGURE.finditer(page)}
        for fr_slot, en_slot in zip(french.slots, english.slots):
            if fr_slot.html is None:
                continue
            label = fr_slot.directive.label
            assert label in shown, f"{source.name}: figure {label!r} missing from the built page"
            want, other = svg_words(fr_slot.html), svg_words(en_slot.html)
            assert want, f"{source.name}: {label} has no words to tell its language by"
            assert shown[label] == want, f"{source.name}: {label} is not the French figure: {shown[label][:2]}"
            if want != other:
                figures += 1
        headers = th_texts(page)
        typed = set(table_headers(markdown))  # tables written in the page, not generated
        generated = [(f, e) for f, e in zip(table_headers(french.markdown), table_headers(english.markdown)) if f not in typed]
        for fr_head, en_head in generated:
            missing = [c for c in fr_head if c not in headers]
            assert not missing, f"{source.name}: French table header {missing} not on the page"
            english_only = [c for c in en_head if c not in fr_head and c in headers]
            assert not english_only, f"{source.name}: English table header {english_only} on the French page"
            tables += fr_head != en_head
    assert figures >= 3 and tables >= 3, f"only {figures} figures and {tables} tables differ between the languages"


def test_language_menu_names_each_language_in_itself(built_site: Path) -> None:
    pages = [p for _, p in all_pages(built_site)] + [built_site / "404.html", built_site / "fr" / "404.html"]
    for path in pages:
        page = path.read_text(encoding="utf-8")
        links = re.findall(r'<a href="[^"]*" hreflang="([a-z]+)" class="md-select__link">\s*(.*?)\s*</a>', page, re.S)
        assert sorted(lang for lang, _ in links) == sorted(NATIVE_NAMES), f"{path}: language menu {links}"
        for lang, label in links:
            assert html.unescape(label) == NATIVE_NAMES[lang], f"{path}: the {lang} entry reads {label!r}"


# -- search ---------------------------------------------------------------------------
def test_one_search_index_per_language(built_site: Path) -> None:
    english = json.loads((built_site / "search" / "search_index.json").read_text(encoding="utf-8"))
    french = json.loads((built_site / "fr" / "search" / "search_index.json").read_text(encoding="utf-8"))
    assert english["config"]["lang"] == ["en"] and french["config"]["lang"] == ["fr"]
    for index, lang in ((english, "en"), (french, "fr")):
        pages = {d["location"].split("#")[0] for d in index["docs"]}
        want = {"" if s.stem.split(".")[0] == "index" else s.stem.split(".")[0] + "/" for s in sources_of(lang)}
        assert pages == want, f"{lang} index: {sorted(pages ^ want)[:5]}"
    fr_titles = {d["title"] for d in french["docs"]}
    assert "Le GRU complet" in fr_titles and "The full GRU" not in fr_titles
    assert "The full GRU" in {d["title"] for d in english["docs"]}
    # every page points its search at its language's index
    for lang, path in all_pages(built_site):
        app = json.loads(re.search(r'<script id="__config" type="application/json">(.*?)</script>', path.read_text(encoding="utf-8"), re.S)[1])
        page_url = "http://h/" + path.parent.relative_to(built_site).as_posix().strip(".") + "/"
        index_url = urljoin(urljoin(page_url.replace("//h//", "//h/"), app["base"].rstrip("/") + "/"), "search/search_index.json")
        want = "/fr/search/search_index.json" if lang == "fr" else "/search/search_index.json"
        assert urlsplit(index_url).path == want, f"{path}: search index {index_url}"
        assert app["search"].endswith("workers/derive-search.js"), f"{path}: search worker {app['search']}"


# -- 404 -------------------------------------------------------------------------------
@pytest.mark.parametrize(("lang", "path", "title"), [("en", "404.html", "Page not found"), ("fr", "fr/404.html", "Page introuvable")])
def test_a_404_page_per_language(built_site: Path, lang: str, path: str, title: str) -> None:
    page = (built_site / path).read_text(encoding="utf-8")
    assert f'<html lang="{lang}"' in page
    assert f"<title>{title} - derive</title>" in page and f"<h1>{title}</h1>" in page
    assert credit.credit_line(lang) in html.unescape(page)
    assert 'rel="alternate"' not in page, "an alternate link makes the theme fetch a sitemap"
    hrefs = re.findall(r'<a [^>]*href="([^"#]+)', page)
    local = [h for h in hrefs if h.startswith("/")]
    assert len(local) > 10, f"{path}: {len(local)} links"
    for href in local:
        target = built_site / href.lstrip("/")
        assert target.is_file() or (target / "index.html").is_file(), f"{path}: link {href} leads nowhere"
    home = re.search(r'<a href="([^"]*)" class="derive-not-found__home">', page)[1]
    assert home == ("/fr/" if lang == "fr" else "/")
    menu = dict(re.findall(r'<a href="([^"]*)" hreflang="([a-z]+)" class="md-select__link">', page))
    assert menu == {"/": "en", "/fr/": "fr"}, f"{path}: language menu {menu}"


# -- credit ------------------------------------------------------------------------------
def test_credit_line_and_posts_in_every_footer(built_site: Path) -> None:
    posts = _mkdocs_config()["extra"]["thread_posts"]
    covered: set[int] = set()
    for lang, path in all_pages(built_site):
        page = html.unescape(path.read_text(encoding="utf-8"))
        footer = page[page.index('<footer class="md-footer">') :]
        assert "Vincent, Objectif Data Science (@ObjectifDataSci)" in footer and "25" in footer, path
        assert CREDIT_WORDS[lang] in footer, f"{path}: credit line not in {lang}"
        name = path.parent.name if path.parent not in (built_site, built_site / "fr") else "index"
        if f"{name}.md" in posts:
            sentence = credit.posts_sentence(posts[f"{name}.md"], lang)
            assert sentence in footer, f"{path}: footer lacks {sentence!r}"
            covered.update(posts[f"{name}.md"])
    assert covered == set(range(1, 26)), f"posts covered by no page: {sorted(set(range(1, 26)) - covered)}"
    for lang in NATIVE_NAMES:
        home = html.unescape((built_site / ("fr/" if lang == "fr" else "") / "index.html").read_text(encoding="utf-8"))
        article = home[home.index("<article") : home.index("</article>")]
        assert "Vincent, Objectif Data Science (@ObjectifDataSci)" in article, f"home ({lang}) lacks the credit"


def test_posts_sentences() -> None:
    assert credit.posts_sentence([6, 7, 8, 13, 14, 15, 16, 21], "en") == "This page covers posts 6–8, 13–16 and 21 of the thread."
    assert credit.posts_sentence([9, 10], "fr") == "Cette page couvre les messages 9 et 10 du fil."
    assert credit.posts_sentence([5], "fr") == "Cette page couvre le message 5 du fil."
    assert credit.posts_sentence([], "en") == "This page goes beyond the thread."
    with pytest.raises(credit.CreditError, match="'nope.md' is not a page"):
        credit.check_mapping({"nope.md": [1]}, ["rnn.md"])
    with pytest.raises(credit.CreditError, match=r"numbered 1 to 25, got \[26\]"):
        credit.check_mapping({"rnn.md": [26]}, ["rnn.md"])


BIBLIOGRAPHY = ("cho2014", "chung2014", "hochreiter1997", "gers2000", "pascanu2013", "jozefowicz2015", "pytorch", "keras", "zhou2016", "gers-schmidhuber2000", "feng2024", "li2018")


@pytest.mark.parametrize("lang", list(NATIVE_NAMES))
def test_sources_page_and_citations(built_site: Path, lang: str) -> None:
    prefix = built_site / "fr" if lang == "fr" else built_site
    page = (prefix / "sources" / "index.html").read_text(encoding="utf-8")
    for anchor in BIBLIOGRAPHY:
        assert f'id="{anchor}"' in page, f"sources ({lang}) lacks #{anchor}"
    assert "v1" in page and "v3" in page  # both versions of Cho et al.
    cited = set()
    for path in prefix.rglob("index.html"):
        cited.update(re.findall(r'href="(?:\.\./)*sources/#([\w-]+)"', path.read_text(encoding="utf-8")))
    assert {"cho2014", "hochreiter1997", "gers2000", "keras"} <= cited, f"pages cite only {sorted(cited)}"
    assert cited <= set(BIBLIOGRAPHY) | {"thread", "ng"}, f"citations of missing entries: {sorted(cited - set(BIBLIOGRAPHY))}"


# -- navigation and typesetting ---------------------------------------------------------
def test_nav_labels_are_page_titles(built_site: Path) -> None:
    """The sidebar's label of each page is the page's own title (the home
    page aside, labelled Home / Accueil)."""
    for lang, path in all_pages(built_site):
        page = path.read_text(encoding="utf-8")
        title = " ".join(html.unescape(re.sub(r"<[^>]*>", "", re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S)[1])).split()).rstrip("¶").strip()
        nav = page[page.index("md-nav--primary") :]
        active = re.search(r'<a href="[^"]*" class="md-nav__link md-nav__link--active">\s*<span class="md-ellipsis">(.*?)</span>', nav, re.S)
        if active is None:  # a page with a toc: its label is the toggle's
            active = re.search(r'<label class="md-nav__link md-nav__link--active"[^>]*>\s*<span class="md-ellipsis">(.*?)</span>', nav, re.S)
        assert active is not None, f"{path}: no active nav entry"
        label = " ".join(html.unescape(re.sub(r"<[^>]*>", "", active[1])).split())
        if path.parent in (built_site, built_site / "fr"):
            assert label == {"en": "Home", "fr": "Accueil"}[lang]
        else:
            assert label == title, f"{path}: nav says {label!r}, the page {title!r}"


def test_jacobians_put_one_term_per_line() -> None:
    """A Jacobian that is a sum has one line per term ("&\\quad + …" after
    the first); forward and backward equations keep one line each."""
    import sympy

    from derive.render import display

    for cell in derive.cells():
        name = cell.name
        lines = cell.latex("jacobian").split("\n")[1:-1]
        terms = sum(len(sympy.Add.make_args(rhs)) for _, rhs in display.jacobian_lines(cell))
        assert len(lines) == terms, f"{name}: {len(lines)} lines for {terms} terms"
        for line in lines:
            head = line.split("&", 1)[1]
            assert head.startswith(("= ", r"\quad + ", r"\quad - ")), f"{name}: {line[:60]}"
        for which in ("forward", "backward"):
            assert r"&\quad" not in cell.latex(which), f"{name} {which} changed layout"
    assert derive.cell("gru").latex("jacobian").count(r"&\quad + ") == 3
