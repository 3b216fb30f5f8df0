"""The site build: formulas come from the cells, KaTeX failures fail the
build, and nothing in the built site points outside it.

``built_site`` (tests/conftest.py) is the real site, built once with
``mkdocs build --strict``. The small sites built here use the same hook and
Markdown extensions on a page or two, to see the build fail (or change)
when it should.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sympy

from conftest import require_extra

yaml = require_extra("yaml", "docs")

import derive  # noqa: E402
from derive.site.directives import DirectiveError, Sources, expand, inline_svg, params_table  # noqa: E402
from derive.site.katex import Formula, KatexRenderer, KatexSetupError, asset_files

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MATH_KINDS = {"forward", "backward", "jacobian", "equation", "sigmoid"}
DIRECTIVE = re.compile(r"^[ \t]*\{\{\s*derive:\s*([^{}]*?)\s*\}\}[ \t]*$")
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
DISPLAY_BLOCK = re.compile(
    r'<div class="derive-math" data-derive="(?P<label>[^"]*)"[^>]*>.*?'
    r'<annotation encoding="application/x-tex">(?P<tex>.*?)</annotation>',
    re.S,
)


def _need_node() -> None:
    reason = None
    if shutil.which("node") is None:
        reason = "node is not on PATH"
    elif not (ROOT / "node_modules" / "katex").is_dir():
        reason = "node_modules/katex is missing: run `npm ci`"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


# -- what the pages should show ---------------------------------------------------
def expected_latex(label: str, cell_of=derive.cell) -> str:
    """The LaTeX a math directive must show, asked of the cells directly."""
    from derive.render.latex import equation_latex, sigmoid_latex

    kind, *args = label.split()
    if kind == "sigmoid":
        return sigmoid_latex()
    if kind == "equation":
        return equation_latex(cell_of(args[0]), args[1])
    return cell_of(args[0]).latex(kind)


def math_directives(markdown: str) -> list[str]:
    """The math directives of a page, in order (not those in code fences)."""
    labels, fence = [], None
    for line in markdown.splitlines():
        opening = FENCE.match(line)
        if fence:
            if opening and opening[1][0] == fence[0] and len(opening[1]) >= len(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        if opening:
            fence = opening[1]
            continue
        match = DIRECTIVE.match(line)
        if match and match[1].split()[0] in MATH_KINDS:
            labels.append(" ".join(match[1].split()))
    return labels


def built_page(site: Path, source: Path) -> Path:
    """docs/gru.fr.md → site/fr/gru/index.html."""
    name, _, lang = source.name.removesuffix(".md").partition(".")
    prefix = site / lang if lang else site
    return prefix / "index.html" if name == "index" else prefix / name / "index.html"


def display_formulas(page_html: str) -> list[tuple[str, str]]:
    return [(m["label"], html.unescape(m["tex"])) for m in DISPLAY_BLOCK.finditer(page_html)]


# -- the real site ----------------------------------------------------------------
def test_every_page_is_built_in_both_languages(built_site: Path) -> None:
    sources = sorted(DOCS.glob("*.md"))
    assert sources, "no pages under docs/"
    for source in sources:
        assert built_page(built_site, source).is_file(), f"{source.name} was not built"
    for source in (s for s in sources if s.name.count(".") == 1):
        assert (built_site / "fr" / source.stem).exists() or source.stem == "index"
    assert (built_site / "fr" / "index.html").is_file()


def test_each_formula_is_the_current_latex_of_its_cell(built_site: Path) -> None:
    checked = 0
    for source in sorted(DOCS.glob("*.md")):
        wanted = math_directives(source.read_text(encoding="utf-8"))
        shown = display_formulas(built_page(built_site, source).read_text(encoding="utf-8"))
        assert [label for label, _ in shown] == wanted, f"{source.name}: directives and formulas differ"
        for label, tex in shown:
            assert tex == expected_latex(label), f"{source.name}: {label} is not the cell's current LaTeX"
            checked += 1
    assert checked > 0, "no formula directive on the whole site"


def test_gru_page_shows_the_gru_equations(built_site: Path) -> None:
    for page in (built_site / "gru" / "index.html", built_site / "fr" / "gru" / "index.html"):
        text = page.read_text(encoding="utf-8")
        assert 'class="katex"' in text
        assert ".katex-error" not in text and "katex-error" not in text


def test_katex_css_and_fonts_are_in_the_site(built_site: Path) -> None:
    css = built_site / "assets" / "katex" / "katex.min.css"
    assert css.is_file()
    fonts = re.findall(r"url\((fonts/[^)]+)\)", css.read_text(encoding="utf-8"))
    assert fonts and all((css.parent / f).is_file() for f in fonts)
    for page, href in (("gru/index.html", "../assets/katex/katex.min.css"), ("fr/gru/index.html", "../../assets/katex/katex.min.css")):
        assert f'<link rel="stylesheet" href="{href}">' in (built_site / page).read_text(encoding="utf-8")


def test_no_raw_tex_or_leftover_markers(built_site: Path) -> None:
    for page in built_site.rglob("*.html"):
        # code may quote a directive (the API reference of derive.site does)
        text = re.sub(r"<code[ >].*?</code>", "", page.read_text(encoding="utf-8"), flags=re.S)
        for leftover in ('class="arithmatex"', "derive-pending", "<!--derive-math-", "derive-slot-", "{{ derive"):
            assert leftover not in text, f"{page.relative_to(built_site)}: {leftover}"


class _Urls(HTMLParser):
    """Every URL of an HTML page that the browser could fetch."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._raw: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None or name.startswith("xmlns") or (tag == "a" and name == "href"):
                continue  # namespaces are names; a link is only followed by a reader
            if name == "style":
                self.urls += css_urls(value)
            else:
                self.urls += re.findall(r"(?:https?:)?//[^\s\"'<>,]+", value)
        if tag in ("script", "style"):
            self._raw = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._raw:
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw == "style":
            self.urls += css_urls(data)
        elif self._raw == "script":
            self.urls += re.findall(r"https?://[^\s\"'<>`]+", data)


def css_urls(css: str) -> list[str]:
    """The absolute URLs a stylesheet could fetch (``data:`` URIs and
    comments are not fetches)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"url\(\s*([\"'])data:.*?\1\s*\)|url\(\s*data:[^)]*\)", "", css, flags=re.S)
    return re.findall(r"(?:https?:)?//[^\s\"')]+", css)


def _external(urls: list[str]) -> list[str]:
    return [u for u in urls if urlsplit(u if "://" in u else "http:" + u).hostname not in LOCAL_HOSTS]


def _theme_files() -> set[bytes]:
    import material

    theme = Path(material.__file__).parent / "templates"
    return {p.read_bytes() for p in theme.rglob("*.js")}


def test_nothing_points_outside_the_site(built_site: Path) -> None:
    """No URL of another host in the HTML or CSS, except plain <a href>
    links and XML namespace names. The theme's own JavaScript bundles carry
    URLs of features this site does not enable (GitHub repository facts,
    mermaid); the browser test checks that no such request is made. Any
    other JavaScript must carry none."""
    theme_js = _theme_files()
    problems = []
    for path in sorted(built_site.rglob("*")):
        if path.suffix == ".html":
            parser = _Urls()
            parser.feed(path.read_text(encoding="utf-8"))
            found = _external(parser.urls)
        elif path.suffix == ".css":
            found = _external(css_urls(path.read_text(encoding="utf-8")))
        elif path.suffix == ".js" and path.read_bytes() not in theme_js:
            found = _external(re.findall(r"https?://[^\s\"'`)]+", path.read_text(encoding="utf-8")))
        else:
            continue
        problems += [f"{path.relative_to(built_site)}: {u}" for u in found]
    assert not problems, "\n".join(problems[:20])


def test_french_site_has_french_interface(built_site: Path) -> None:
    page = (built_site / "fr" / "gru" / "index.html").read_text(encoding="utf-8")
    assert '<html lang="fr"' in page
    assert 'placeholder="Rechercher"' in page
    assert 'hreflang="en"' in page and 'href="../../gru/"' in page
    english = (built_site / "gru" / "index.html").read_text(encoding="utf-8")
    assert 'href="../fr/gru/" hreflang="fr"' in english


# -- small sites: failures and changes --------------------------------------------
def _mini_site(tmp: Path, pages: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Build ``pages`` with the real hook and Markdown extensions."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = tmp / "docs"
    docs.mkdir(parents=True, exist_ok=True)  # callers may have put assets there already
    for name, text in pages.items():
        (docs / name).write_text(text, encoding="utf-8")
    (tmp / "node_modules").symlink_to(ROOT / "node_modules")
    shutil.copy(ROOT / "package.json", tmp / "package.json")
    (tmp / "hook.py").write_text(prelude + "\nfrom derive.site.hook import *  # noqa: F403\n", encoding="utf-8")
    mini = {
        "site_name": "mini",
        "docs_dir": str(docs),
        "site_dir": str(tmp / "site"),
        "theme": {"name": "material", "font": False},
        "hooks": [str(tmp / "hook.py")],
        "markdown_extensions": config["markdown_extensions"],
    }
    (tmp / "mkdocs.yml").write_text(yaml.safe_dump(mini), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp / "mkdocs.yml")],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


MODIFIED_GRU = '''
import dataclasses
import sympy
import derive

_real_cell = derive.cell


def modified_gru():
    """The full GRU with its update gate turned around: c = (1 − Gu) ⊙ h + Gu ⊙ c(t−1)."""
    cell = _real_cell("gru")
    Gu = sympy.Symbol("Gu")
    nodes = tuple(
        dataclasses.replace(n, expr=n.expr.xreplace({Gu: 1 - Gu})) if n.target == "c" else n
        for n in cell.nodes
    )
    return dataclasses.replace(cell, nodes=nodes)
'''
PATCH_CELL = "\nderive.cell = lambda name: modified_gru() if name == 'gru' else _real_cell(name)\n"
GRU_PAGE = "# GRU\n\nThe update gate $G_u$.\n\n{{ derive: forward gru }}\n\n{{ derive: equation gru c }}\n"


def _modified_gru():
    namespace: dict = {}
    exec(MODIFIED_GRU, namespace)  # the same definition the patched build uses
    return namespace["modified_gru"]()


MINI_PAGES = {"index.md": GRU_PAGE, "other.md": "# Other $c^{(t-1)}$\n"}


@pytest.fixture(scope="module")
def mini_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-page site built from the real cells."""
    _need_node()
    tmp = tmp_path_factory.mktemp("mini")
    proc = _mini_site(tmp, MINI_PAGES)
    assert proc.returncode == 0, proc.stderr
    return tmp / "site"


def test_changing_a_cell_equation_changes_the_page(mini_original: Path, tmp_path: Path) -> None:
    changed = _mini_site(tmp_path, MINI_PAGES, MODIFIED_GRU + PATCH_CELL)
    assert changed.returncode == 0, changed.stderr
    before = display_formulas((mini_original / "index.html").read_text(encoding="utf-8"))
    after = display_formulas((tmp_path / "site" / "index.html").read_text(encoding="utf-8"))
    gru, modified = derive.cell("gru"), _modified_gru()
    assert before == [("forward gru", gru.latex("forward")), ("equation gru c", expected_latex("equation gru c"))]
    assert after == [
        ("forward gru", modified.latex("forward")),
        ("equation gru c", expected_latex("equation gru c", lambda name: modified)),
    ]
    assert before[0][1] != after[0][1] and before[1][1] != after[1][1]


def test_build_is_deterministic(mini_original: Path, tmp_path: Path) -> None:
    again = _mini_site(tmp_path, MINI_PAGES)
    assert again.returncode == 0, again.stderr
    first = {p.relative_to(mini_original): p.read_bytes() for p in mini_original.rglob("*.html")}
    second = {p.relative_to(tmp_path / "site"): p.read_bytes() for p in (tmp_path / "site").rglob("*.html")}
    assert first == second


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("# Bad\n\nA broken formula $\\frac{1}{$ here.\n", "formulas KaTeX cannot render"),
        ("# Typed\n\n$$\na = b\n$$\n", "display math typed in the Markdown"),
        ("# Unknown\n\n{{ derive: forward nocell }}\n", "unknown cell 'nocell'"),
    ],
    ids=["bad-formula", "typed-display-math", "unknown-cell"],
)
def test_bad_pages_fail_the_build(tmp_path: Path, page: str, message: str) -> None:
    _need_node()
    proc = _mini_site(tmp_path, {"index.md": "# Home\n", "bad.md": page})
    assert proc.returncode != 0
    assert message in proc.stderr and "bad.md" in proc.stderr, proc.stderr[-2000:]


# -- directives, without a build ----------------------------------------------------
def _sources(tmp_path: Path, **kw) -> Sources:
    return Sources(docs_dir=tmp_path, **kw)


def test_expansion_follows_the_cell(tmp_path: Path) -> None:
    page = "Intro.\n{{ derive: forward gru }}\nMore.\n"
    real = expand(page, page="p.md", lang="en", sources=_sources(tmp_path))
    changed = expand(page, page="p.md", lang="en", sources=_sources(tmp_path, cell=lambda name: _modified_gru()))
    assert [s.formula for s in real.slots] == [Formula(derive.cell("gru").latex("forward"), True)]
    assert [s.formula for s in changed.slots] == [Formula(_modified_gru().latex("forward"), True)]
    assert real.slots[0].formula != changed.slots[0].formula
    # the slot stands in its own paragraph, between the surrounding text
    assert real.markdown.split("\n") == ["Intro.", "", real.slots[0].token, "", "More.", ""]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{{ derive: nosuch gru }}", "unknown directive 'nosuch'"),
        ("{{ derive: forward }}", "takes 1 argument(s), got 0"),
        ("{{ derive: forward nocell }}", "unknown cell 'nocell'; known cells: rnn"),
        ("{{ derive: equation gru nosuch }}", "has no equation for 'nosuch'"),
        ("{{ derive: kernel gru }}", "missing generated kernel"),
        ("{{ derive: plot nosuch }}", "missing plot file"),
        ("{{ derive: plot ../../etc }}", "bad plot name"),
        ("See {{ derive: forward gru }} inline.", "must stand alone on its line"),
    ],
)
def test_bad_directives_name_page_and_directive(tmp_path: Path, line: str, message: str) -> None:
    sources = _sources(tmp_path, kernels_dir=tmp_path / "no-kernels")
    with pytest.raises(DirectiveError) as err:
        expand(f"# T\n\n{line}\n", page="rnn.fr.md", lang="fr", sources=sources)
    assert message in str(err.value)
    assert str(err.value).startswith("rnn.fr.md:3:")


def test_directives_in_code_are_left_alone(tmp_path: Path) -> None:
    page = "```markdown\n{{ derive: forward gru }}\n```\n\n~~~~\n{{ derive: nosuch }}\n~~~~\n"
    out = expand(page, page="p.md", lang="en", sources=_sources(tmp_path))
    assert out.markdown == page and not out.slots


def test_missing_diagram_module_is_a_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "derive.render.diagram", None)  # import now fails
    with pytest.raises(DirectiveError, match="derive.render.diagram is not available"):
        expand("{{ derive: diagram gru }}\n", page="gru.md", lang="en", sources=_sources(tmp_path))


def test_kernel_and_plot_directives_read_their_files(tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    (kernels / "gru.py").write_text('"""The gru kernel."""\nx = "```"\n', encoding="utf-8")
    plots = tmp_path / "assets" / "generated" / "experiments"
    plots.mkdir(parents=True)
    (plots / "memory.fr.svg").write_text('<?xml version="1.0"?>\n<svg id="a"><use href="#a"/></svg>', encoding="utf-8")
    sources = _sources(tmp_path, kernels_dir=kernels)
    out = expand("  {{ derive: kernel gru }}\n\n{{ derive: plot memory }}\n", page="k.md", lang="fr", sources=sources)
    lines = out.markdown.split("\n")
    assert lines[1] == '  ```` python title="derive/kernels/gru.py"'  # longer than the ``` inside
    assert lines[2:5] == ['  """The gru kernel."""', '  x = "```"', "  ````"]
    assert out.slots[0].html == '<svg id="memory-0-a"><use href="#memory-0-a"/></svg>'


def test_params_table_in_both_languages() -> None:
    gru = derive.cell("gru")
    en, fr = params_table(gru, "en"), params_table(gru, "fr")
    assert en[0] == "| Parameter | Shape | Column blocks |"
    assert fr[0] == "| Paramètre | Forme | Blocs de colonnes |"
    assert len(en) == 2 + len(gru.params) and en[2:] == fr[2:]
    assert r"| $W_{r}$ | $n_h \times (n_h + n_x)$ | $[W_{rc},\ W_{rx}]$ |" in en
    assert "| $b_{r}$ | $n_h$ | — |" in en
    torch_gru = params_table(derive.cell("gru_torch"), "en")
    assert r"| $W_{hx}$ | $n_h \times n_x$ | — |" in torch_gru


def test_inline_svg_makes_ids_unique_per_figure() -> None:
    svg = '<?xml version="1.0"?><!-- c --><svg><metadata>x</metadata><clipPath id="p1"/><g clip-path="url(#p1)" fill="#p10"/></svg>'
    assert inline_svg(svg, "fig 1") == '<svg><clipPath id="fig-1-p1"/><g clip-path="url(#fig-1-p1)" fill="#p10"/></svg>'
    with pytest.raises(ValueError, match="not an SVG"):
        inline_svg("<html/>", "x")


# -- KaTeX ------------------------------------------------------------------------------
def test_katex_renders_a_batch_in_one_process_and_caches() -> None:
    _need_node()
    renderer = KatexRenderer(ROOT)
    renderer.check()
    good, inline, bad = Formula(r"\frac{a}{b}", True), Formula("G_u", False), Formula(r"\frac{a", False)
    out = renderer.render([good, inline, bad, good])
    assert renderer.calls == 1
    assert 'class="katex-display"' in out[good].html and "katex-display" not in out[inline].html
    assert out[bad].html is None and "KaTeX parse error" in out[bad].error
    renderer.render([good, inline])
    assert renderer.calls == 1  # cached
    warned = renderer.render([Formula("é", False)])[Formula("é", False)]
    assert warned.html and any("unicodeTextInMathMode" in w for w in warned.warnings)


def test_katex_version_is_the_pinned_one(tmp_path: Path) -> None:
    _need_node()
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    (tmp_path / "package.json").write_text('{"dependencies": {"katex": "0.0.1"}}', encoding="utf-8")
    with pytest.raises(KatexSetupError, match="pins 0.0.1"):
        KatexRenderer(tmp_path).check()
    pinned = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["dependencies"]["katex"]
    assert KatexRenderer(ROOT).check() == pinned


def test_asset_files_are_the_css_and_its_fonts() -> None:
    _need_node()
    files = asset_files(ROOT / "node_modules" / "katex" / "dist")
    assert files[0][0] == "assets/katex/katex.min.css"
    assert all(src.is_file() for _, src in files)
    assert any(dest.endswith(".woff2") for dest, _ in files)


def test_the_modified_cell_turns_the_update_gate_around() -> None:
    c_expr = next(n.expr for n in _modified_gru().nodes if n.target == "c")
    Gu, h = sympy.Symbol("Gu"), sympy.Symbol("h")
    assert c_expr.coeff(h) == 1 - Gu


def test_counts_table_sums_the_cells_parameter_shapes(tmp_path: Path) -> None:
    from math import prod

    from derive.site.directives import counts_table

    rows = counts_table(_sources(tmp_path), "en", n_x=3, n_h=5)
    for name in derive.NAMES:
        cell = derive.cell(name)
        expected = sum(prod(cell.param_shape(p, 3, 5)) for p in cell.params)
        row = next(r for r in rows if r.startswith(f"| `{name}` |"))
        assert row.rstrip(" |").endswith(f"| {expected:,}"), row
    assert "n_{h} \\left(n_{h} + n_{x} + 1\\right)" in rows[2]  # rnn: n_h (n_h + n_x + 1)
    assert "paramètres" in counts_table(_sources(tmp_path), "fr")[0]
