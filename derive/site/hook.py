"""The MkDocs hook of the derive site (``hooks:`` in ``mkdocs.yml``).

Per build (mkdocs-static-i18n runs one build per language):

1. ``on_page_markdown`` expands the ``{{ derive: … }}`` directives
   (:mod:`derive.site.directives`): formulas and figures become slots.
2. ``on_page_content`` collects the page's math — the directive formulas,
   in display mode, and the inline ``$…$`` notation that
   ``pymdownx.arithmatex`` found (never inside code) — and leaves a marker
   for each. Display math typed in the Markdown is refused.
3. ``on_env`` — once every page is rendered, before any is written — has
   all formulas of the build typeset in one ``node`` process
   (:mod:`derive.site.katex`). A formula KaTeX cannot parse fails the
   build, naming its page. Each marker becomes a light stand-in (the
   formula's text, which the search plugin indexes cheaply).
4. ``on_post_page`` swaps each stand-in for KaTeX's HTML in the written page.

KaTeX's stylesheet and fonts are copied from ``node_modules/katex/dist``
into ``assets/katex/`` of the built site; nothing is committed or fetched.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority, get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from derive.site.directives import DirectiveError, Slot, Sources, expand, leftover_tokens
from derive.site.katex import Formula, KatexRenderer, KatexSetupError, Rendered, asset_files

log = get_plugin_logger("derive")

KATEX_CSS = "assets/katex/katex.min.css"
INLINE_MATH = re.compile(r'<span class="arithmatex">\\\((?P<tex>.*?)\\\)</span>', re.S)
TYPED_DISPLAY_MATH = re.compile(r'<div class="arithmatex">(?P<tex>.*?)</div>', re.S)
TOC_MATH = re.compile(r"\\\((?P<tex>.*?)\\\)", re.S)  # a toc title is the heading's escaped text
SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):(?=<code>)")
HEAD_ALTERNATE = re.compile(r'[ \t]*<link rel="alternate" href="[^"]*" hreflang="[^"]*">\n?')
MARKER = "<!--derive-math-{}-->"
MARKER_PATTERN = re.compile(r"<!--derive-math-(\d+)-->")
STANDIN_PATTERN = re.compile(r'<(span|div) class="derive-pending" data-n="(\d+)"[^>]*>[^<]*</\1>')


@dataclass(frozen=True)
class _Math:
    """One formula of one page, and the directive it came from (if any)."""

    page: str
    formula: Formula
    label: str = ""


@dataclass
class _BuildState:
    slots: dict[str, list[Slot]] = field(default_factory=dict)
    math: list[_Math] = field(default_factory=list)
    html: list[str] = field(default_factory=list)  # typeset, by marker number


_renderers: dict[Path, KatexRenderer] = {}
_state = _BuildState()


def renderer_for(config: MkDocsConfig) -> KatexRenderer:
    """The (cached) renderer of the project that holds ``mkdocs.yml``."""
    root = Path(config.config_file_path).resolve().parent
    if root not in _renderers:
        _renderers[root] = KatexRenderer(root)
    return _renderers[root]


def page_lang(page: Page, config: MkDocsConfig) -> str:
    """The language of the page's text: its file's locale under
    mkdocs-static-i18n (an untranslated page falls back to English text),
    otherwise the theme's language."""
    locale = getattr(page.file, "locale", None) or config.theme.get("language") or "en"
    return re.split(r"[-_]", str(locale))[0]


# -- events -------------------------------------------------------------------
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    global _state
    _state = _BuildState()
    try:
        renderer_for(config).check()
    except KatexSetupError as exc:
        raise PluginError(str(exc)) from exc
    if KATEX_CSS not in config.extra_css:
        config.extra_css.insert(0, KATEX_CSS)
    return config


@event_priority(50)  # before mkdocs-static-i18n sorts the files per language
def on_files(files: Files, config: MkDocsConfig) -> Files:
    for dest, source in asset_files(renderer_for(config).dist_dir):
        if files.get_file_from_path(dest) is None:
            files.append(File.generated(config, dest, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    sources = Sources(Path(config.docs_dir))
    try:
        expansion = expand(markdown, page=page.file.src_uri, lang=page_lang(page, config), sources=sources)
    except DirectiveError as exc:
        raise PluginError(f"derive directive: {exc}") from exc
    _state.slots[page.file.src_uri] = expansion.slots
    return expansion.markdown


def on_page_content(content: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    src = page.file.src_uri
    typed = TYPED_DISPLAY_MATH.search(content)
    if typed:
        raise PluginError(
            f"{src}: display math typed in the Markdown ({_excerpt(typed['tex'])}); "
            "formulas come from the cells: use a {{ derive: … }} directive"
        )
    for slot in _state.slots.pop(src, []):
        content = _fill_slot(content, slot, src)
    # docstrings written for Sphinx (:class:`Cell`): show the name as code
    content = SPHINX_ROLE.sub("", content)
    left = leftover_tokens(content)
    if left:
        raise PluginError(f"{src}: the output of a directive ({left[0]}) did not survive Markdown")

    def inline(match: re.Match[str]) -> str:
        return _mark(_Math(src, Formula(html.unescape(match["tex"]), False)))

    _walk_toc(page.toc, TOC_MATH, inline)
    return INLINE_MATH.sub(inline, content)


def on_env(env: Any, config: MkDocsConfig, files: Files) -> Any:
    math = _state.math
    if not math:
        return env
    try:
        rendered = renderer_for(config).render(m.formula for m in math)
    except KatexSetupError as exc:
        raise PluginError(str(exc)) from exc
    _check(math, rendered)
    _state.html = [_wrap(m, rendered[m.formula]) for m in math]

    def standin(match: re.Match[str]) -> str:
        n = int(match[1])
        if math[n].formula.display:
            return f'<div class="derive-pending" data-n="{n}" data-search-exclude></div>'
        return f'<span class="derive-pending" data-n="{n}">{_plain_text(_state.html[n])}</span>'

    for file in files.documentation_pages():
        page = file.page
        if page is not None and page.content:
            page.content = MARKER_PATTERN.sub(standin, page.content)
            _walk_toc(page.toc, MARKER_PATTERN, standin)
    return env


def on_post_page(output: str, page: Page, config: MkDocsConfig) -> str:
    output = STANDIN_PATTERN.sub(lambda m: _state.html[int(m[2])], output)
    # mkdocs-static-i18n points the alternates at this page in the other
    # language; Material's script then fetches sitemap.xml under each of the
    # head's <link rel=alternate> (a 404 per page, mkdocs-material #6582).
    # The header's language menu keeps the per-page links.
    output = HEAD_ALTERNATE.sub("", output)
    if "derive-pending" in output or "<!--derive-math-" in output:
        raise PluginError(f"{page.file.src_uri}: a formula was left untypeset")
    return output


# -- helpers ------------------------------------------------------------------
def _mark(m: _Math) -> str:
    _state.math.append(m)
    return MARKER.format(len(_state.math) - 1)


def _fill_slot(content: str, slot: Slot, src: str) -> str:
    paragraph = f"<p>{slot.token}</p>"
    if content.count(paragraph) != 1:
        raise PluginError(
            f"{src}:{slot.directive.line}: {slot.directive.text} must be a paragraph of its own "
            "(blank lines around it; not in a table, a sentence or an indented code block)"
        )
    if slot.formula is not None:
        block = _mark(_Math(src, slot.formula, slot.directive.label))
    else:
        label = html.escape(slot.directive.label, quote=True)
        block = f'<div class="derive-figure" data-derive="{label}">{slot.html}</div>'
    return content.replace(paragraph, block)


def _check(math: list[_Math], rendered: dict[Formula, Rendered]) -> None:
    """Fail on formulas KaTeX rejects; warn (an error under --strict) on
    those it only frowns upon."""
    errors = []
    for m in dict.fromkeys(math):
        result = rendered[m.formula]
        if result.error is not None:
            errors.append(f"{m.page}: {_excerpt(m.formula.tex)}: {result.error}")
        for warning in result.warnings:
            log.warning(f"{m.page}: KaTeX: {warning} in {_excerpt(m.formula.tex)}")
    if errors:
        raise PluginError("formulas KaTeX cannot render:\n  " + "\n  ".join(errors))


def _wrap(m: _Math, result: Rendered) -> str:
    out = result.html or ""
    # the MathML copy is for screen readers; the search index needs no TeX
    out = out.replace('<span class="katex-mathml">', '<span class="katex-mathml" data-search-exclude>', 1)
    if m.formula.display:
        label = html.escape(m.label, quote=True)
        return f'<div class="derive-math" data-derive="{label}" data-search-exclude>{out}</div>'
    return out


def _plain_text(katex_html: str) -> str:
    """What a reader sees of an inline formula, as escaped text: G_u → Gu."""
    start = katex_html.find('<span class="katex-html"')
    visible = katex_html[start:] if start >= 0 else katex_html
    text = html.unescape(re.sub(r"<[^>]*>", "", visible)).replace("\u200b", "")
    return html.escape(" ".join(text.split()), quote=False)


def _walk_toc(toc: Any, pattern: re.Pattern[str], replace: Any) -> None:
    """Apply ``pattern.sub(replace, …)`` to every table-of-contents title:
    headings with inline notation carry it into the toc."""
    for item in toc:
        item.title = pattern.sub(replace, item.title)
        _walk_toc(item.children, pattern, replace)


def _excerpt(tex: str, width: int = 80) -> str:
    tex = " ".join(html.unescape(tex).split())
    return repr(tex if len(tex) <= width else tex[: width - 1] + "…")
