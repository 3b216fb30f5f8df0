"""The credit line of the derive site and the posts of the thread each page covers.

The site follows a public thread of 25 posts in French by Vincent,
Objectif Data Science (@ObjectifDataSci). Every page says so in its footer,
in the page's language, with the posts of the thread the page covers (the
mapping is ``extra.thread_posts`` in ``mkdocs.yml``: page → post numbers,
an empty list for a page that goes beyond the thread) and a link to the
sources page. The 404 page gets the same footer, and its own words.

Everything a reader sees here is produced by :func:`footer` and
:func:`not_found` from the tables below, one entry per language.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

AUTHOR = "Vincent, Objectif Data Science (@ObjectifDataSci)"
THREAD_POSTS = 25

# per language: the credit line, the page's posts (one, several, none), the
# sources link, the theme's credit, and the 404 page
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "credit": "After the thread by {author}: {n} posts in French on recurrent networks and the GRU.",
        "posts_one": "This page covers post {posts} of the thread.",
        "posts_many": "This page covers posts {posts} of the thread.",
        "posts_none": "This page goes beyond the thread.",
        "range": "{a}–{b}",
        "and": " and ",
        "sources": "Sources and bibliography",
        "generator": "Made with {link}",
        "not_found_title": "Page not found",
        "not_found_lead": "There is no page at this address: the link that led here may be old, or the address mistyped.",
        "not_found_home": "Go to the home page",
        "not_found_search": "or search the site with the search box at the top of the page.",
    },
    "fr": {
        "credit": "D’après le fil de {author}\u00a0: {n} messages en français sur les réseaux récurrents et le GRU.",
        "posts_one": "Cette page couvre le message {posts} du fil.",
        "posts_many": "Cette page couvre les messages {posts} du fil.",
        "posts_none": "Cette page va au-delà du fil.",
        "range": "{a} à {b}",
        "and": " et ",
        "sources": "Sources et bibliographie",
        "generator": "Réalisé avec {link}",
        "not_found_title": "Page introuvable",
        "not_found_lead": "Il n’y a pas de page à cette adresse\u00a0: le lien qui vous a mené ici est peut-être ancien, ou l’adresse mal saisie.",
        "not_found_home": "Aller à la page d’accueil",
        "not_found_search": "ou chercher dans le site avec le champ de recherche en haut de la page.",
    },
}


class CreditError(ValueError):
    """``extra.thread_posts`` in mkdocs.yml is malformed."""


@dataclass(frozen=True)
class Footer:
    """What the footer of one page shows."""

    credit: str
    posts: str | None  # None: the page is not in extra.thread_posts
    sources_label: str
    sources_url: str | None
    generator: str


def text(lang: str) -> Mapping[str, str]:
    """The strings of language ``lang`` (English for a language without its own)."""
    return TEXT.get(lang, TEXT["en"])


def credit_line(lang: str) -> str:
    """The credit line, in ``lang``."""
    return text(lang)["credit"].format(author=AUTHOR, n=THREAD_POSTS)


def _ranges(numbers: Iterable[int], lang: str) -> str:
    """``[2, 3, 4, 9]`` → ``"2–4 and 9"`` (``"2 à 4 et 9"`` in French)."""
    t = text(lang)
    nums = sorted(set(numbers))
    runs: list[tuple[int, int]] = []
    for n in nums:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    parts = [str(a) if a == b else (f"{a}{t['and']}{b}" if b == a + 1 else t["range"].format(a=a, b=b)) for a, b in runs]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + t["and"] + parts[-1]


def posts_sentence(numbers: list[int], lang: str) -> str:
    """The sentence saying which posts of the thread a page covers."""
    t = text(lang)
    if not numbers:
        return t["posts_none"]
    key = "posts_one" if len(set(numbers)) == 1 else "posts_many"
    return t[key].format(posts=_ranges(numbers, lang))


def check_mapping(mapping: object, pages: Iterable[str]) -> dict[str, list[int]]:
    """``extra.thread_posts`` validated: a mapping from a page of the site
    (its English source name, ``rnn.md``) to a list of post numbers in
    1..25. Raises :class:`CreditError` naming the entry at fault."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise CreditError(f"extra.thread_posts: expected a mapping page -> list of posts, got {type(mapping).__name__}")
    known = set(pages)
    out: dict[str, list[int]] = {}
    for page, posts in mapping.items():
        if page not in known:
            raise CreditError(f"extra.thread_posts: {page!r} is not a page of the site (known: {', '.join(sorted(known))})")
        if not isinstance(posts, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in posts):
            raise CreditError(f"extra.thread_posts[{page!r}]: expected a list of post numbers, got {posts!r}")
        bad = [p for p in posts if not 1 <= p <= THREAD_POSTS]
        if bad:
            raise CreditError(f"extra.thread_posts[{page!r}]: posts are numbered 1 to {THREAD_POSTS}, got {bad}")
        out[page] = posts
    return out


def footer(lang: str, posts: list[int] | None, sources_url: str | None) -> Footer:
    """The footer of a page in ``lang`` covering ``posts`` (None: not mapped)."""
    t = text(lang)
    return Footer(
        credit=credit_line(lang),
        posts=None if posts is None else posts_sentence(posts, lang),
        sources_label=t["sources"],
        sources_url=sources_url,
        generator=t["generator"],
    )


def not_found(lang: str) -> Mapping[str, str]:
    """The words of the 404 page in ``lang``."""
    t = text(lang)
    return {key.removeprefix("not_found_"): value for key, value in t.items() if key.startswith("not_found_")}
