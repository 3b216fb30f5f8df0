"""The ``{{ derive: KIND ARGS }}`` directives of the site's Markdown pages.

A directive stands alone on its line and asks for something derived from a
cell, so that no formula, table of shapes or kernel listing is typed by hand:

- ``{{ derive: forward CELL }}``, ``backward``, ``jacobian``: display math,
  ``cell.latex(KIND)``;
- ``{{ derive: equation CELL TARGET }}``: display math, one forward equation;
- ``{{ derive: sigmoid }}``: display math, σ and its derivative;
- ``{{ derive: params CELL }}``: a Markdown table of the parameters and shapes;
- ``{{ derive: diagram CELL [VIEW] }}``: inline SVG from ``derive.render.diagram``,
  one step's equation graph; VIEW ``state-path`` highlights the paths from
  the previous state to the new one that cross no matrix product, VIEW
  ``unrolled`` draws the cell unrolled over time steps;
- ``{{ derive: kernel CELL }}``: the generated ``derive/kernels/CELL.py``;
- ``{{ derive: plot NAME }}``: ``docs/assets/generated/experiments/NAME.<lang>.svg``,
  and ``NAME.<lang>.dark.svg`` beside it when there is one (the stylesheet
  shows the one of the reader's palette).
- ``{{ derive: counts [CELL…] }}``: a Markdown table of parameter counts
  (every known cell, or the cells named);
- ``{{ derive: structure CELL }}``: what the derived state Jacobian says
  (:mod:`derive.structure`): full or diagonal, state-dependent or not,
  the linear scan if any;
- ``{{ derive: file PATH }}``: a file under docs/, shown whole as a code
  block (the page shows the file a test runs);
- ``{{ derive: conversions layers|weights }}``: the table of torch's, Keras's
  and ONNX's recurrent layers and the derive params each gate block fills,
  or of their weight tensors (:func:`derive.interop.convert.table_rows`,
  read from the interop modules);
- ``{{ derive: notebook }}``: the box offering the page's generated notebook
  (``derive.notebooks``: the directive is also what makes ``derive build``
  write that notebook).

:func:`expand` turns a page's Markdown into Markdown in which each directive
is either plain Markdown (tables, code blocks) or a *slot*: a token alone in
its paragraph that the hook later replaces with typeset math or SVG, once
Markdown is done with the page (so Markdown never sees KaTeX's HTML).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .katex import Formula

if TYPE_CHECKING:
    from ..cell import Cell

DIRECTIVE_LINE = re.compile(r"^(?P<indent>[ \t]*)\{\{\s*derive\s*:(?P<body>[^{}]*)\}\}[ \t]*$")
DIRECTIVE_ANYWHERE = re.compile(r"\{\{\s*derive\s*:")
FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")
PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SLOT_TOKEN = "derive-slot-{:04d}"
SLOT_PATTERN = re.compile(r"derive-slot-\d{4}")

LATEX_KINDS = ("forward", "backward", "jacobian")
ARITY = {
    "forward": 1,
    "backward": 1,
    "jacobian": 1,
    "equation": 2,
    "sigmoid": 0,
    "params": 1,
    "diagram": (1, 2),
    "kernel": 1,
    "plot": 1,
    "table": 1,
    "counts": (0, 50),
    "structure": 1,
    "file": 1,
    "notebook": 0,
    "conversions": 1,
}
TABLE_HEADERS = {
    "en": ("Parameter", "Shape", "Column blocks"),
    "fr": ("Paramètre", "Forme", "Blocs de colonnes"),
}
SIZE_LATEX = {"n_x": "n_x", "n_h": "n_h"}


class DirectiveError(Exception):
    """A directive that cannot be expanded; the message names the page,
    the line and the directive."""


@dataclass(frozen=True)
class Directive:
    """One ``{{ derive: … }}`` line of a page."""

    kind: str
    args: tuple[str, ...]
    page: str
    line: int  # 1-based

    @property
    def text(self) -> str:
        return "{{ derive: " + " ".join((self.kind, *self.args)) + " }}"

    @property
    def label(self) -> str:
        """``"forward gru"``: what the built page records in ``data-derive``."""
        return " ".join((self.kind, *self.args))

    def error(self, reason: str) -> DirectiveError:
        return DirectiveError(f"{self.page}:{self.line}: {self.text}: {reason}")


@dataclass(frozen=True)
class Slot:
    """A directive's output that goes in after Markdown: display math to
    typeset (``formula``) or ready HTML (``html``)."""

    token: str
    directive: Directive
    formula: Formula | None = None
    html: str | None = None


@dataclass
class Expansion:
    """A page's Markdown with its directives expanded, and its slots."""

    markdown: str
    slots: list[Slot] = field(default_factory=list)


def _default_cell(name: str) -> Cell:
    import derive

    return derive.cell(name)


@dataclass(frozen=True)
class Sources:
    """Where directives get what they show. Tests swap ``cell`` for a
    modified cell to see that a changed equation changes the page."""

    docs_dir: Path
    cell: Callable[[str], Cell] = _default_cell
    kernels_dir: Path = Path(__file__).resolve().parent.parent / "kernels"


def expand(markdown: str, *, page: str, lang: str, sources: Sources) -> Expansion:
    """Expand every directive of ``markdown`` (the page ``page``, in
    language ``lang``); directives inside fenced code blocks are left alone.

    Raises :class:`DirectiveError` for an unknown directive, a wrong number
    of arguments, an unknown cell or a missing file, and for a directive
    that does not stand alone on its line.
    """
    out: list[str] = []
    expansion = Expansion("")
    fence: str | None = None
    for number, line in enumerate(markdown.split("\n"), start=1):
        opening = FENCE_OPEN.match(line)
        if fence is not None:
            if opening and opening["fence"][0] == fence[0] and len(opening["fence"]) >= len(fence) and not line.strip().strip(fence[0]):
                fence = None
            out.append(line)
            continue
        if opening:
            fence = opening["fence"]
            out.append(line)
            continue
        match = DIRECTIVE_LINE.match(line)
        if not match:
            if DIRECTIVE_ANYWHERE.search(line):
                raise DirectiveError(
                    f"{page}:{number}: a derive directive must stand alone on its line: {line.strip()!r}"
                )
            out.append(line)
            continue
        words = match["body"].split()
        if not words:
            raise DirectiveError(f"{page}:{number}: empty derive directive")
        directive = Directive(words[0], tuple(words[1:]), page, number)
        indent = match["indent"]
        block = _expand_one(directive, lang, sources, expansion)
        out.extend(["", *(indent + b if b else "" for b in block), ""])
    expansion.markdown = "\n".join(out)
    return expansion


def _expand_one(d: Directive, lang: str, sources: Sources, expansion: Expansion) -> list[str]:
    """The Markdown lines that replace directive ``d``."""
    if d.kind not in ARITY:
        raise d.error(f"unknown directive {d.kind!r}; known: {', '.join(ARITY)}")
    arity = ARITY[d.kind]
    low, high = arity if isinstance(arity, tuple) else (arity, arity)
    if not low <= len(d.args) <= high:
        expected = f"{low} to {high}" if low != high else f"{low}"
        raise d.error(f"{d.kind!r} takes {expected} argument(s), got {len(d.args)}")

    def slot(*, formula: Formula | None = None, html: str | None = None) -> list[str]:
        token = SLOT_TOKEN.format(len(expansion.slots))
        expansion.slots.append(Slot(token, d, formula, html))
        return [token]

    try:
        if d.kind == "sigmoid":
            return slot(formula=Formula(_latex_module(d).sigmoid_latex(), True))
        if d.kind == "plot":
            light = _plot_file(d, lang, sources)
            prefix = f"{d.args[0]}-{len(expansion.slots)}"
            html = inline_svg(light.read_text(encoding="utf-8"), prefix)
            dark = light.with_name(f"{d.args[0]}.{lang}.dark.svg")
            if dark.is_file():
                html += inline_svg(dark.read_text(encoding="utf-8"), f"{prefix}-dark")
            return slot(html=html)
        if d.kind == "table":
            return _result_table(d, lang, sources)
        if d.kind == "counts":
            for name in d.args:
                _cell(Directive(d.kind, (name,), d.page, d.line), sources)  # an unknown name: the error lists the known
            return counts_table(sources, lang, names=d.args or None)
        if d.kind == "structure":
            return structure_table(_cell(d, sources), lang)
        if d.kind == "file":
            return file_block(d, sources)
        if d.kind == "conversions":
            from ..interop.convert import table_rows

            if d.args[0] not in ("layers", "weights"):
                raise d.error(f"'conversions' takes layers or weights, got {d.args[0]!r}")
            return table_rows(d.args[0], lang)
        if d.kind == "notebook":
            from ..notebooks import download_box

            return download_box(d.page, lang)
        cell = _cell(d, sources)
        if d.kind in LATEX_KINDS:
            return slot(formula=Formula(cell.latex(d.kind), True))
        if d.kind == "equation":
            target = d.args[1]
            if not any(n.target == target for n in cell.nodes):
                known = ", ".join(n.target for n in cell.nodes if n.show)
                raise d.error(f"cell {cell.name!r} has no equation for {target!r}; shown equations: {known}")
            return slot(formula=Formula(_latex_module(d).equation_latex(cell, target), True))
        if d.kind == "params":
            return params_table(cell, lang)
        if d.kind == "kernel":
            return kernel_block(d, cell.name, sources)
        # diagram
        svg = diagram_svg(d, cell, lang)
        return slot(html=diagram_html(inline_svg(svg, f"{cell.name}-{len(expansion.slots)}")))
    except DirectiveError:
        raise
    except Exception as exc:  # a renderer failed: say which directive asked for it
        raise d.error(f"{type(exc).__name__}: {exc}") from exc


def _cell(d: Directive, sources: Sources) -> Cell:
    if d.args[0].endswith((".py", ".cell")):  # a cell file under docs/: the page shows a file of its own
        from ..load import load_cell

        path = (sources.docs_dir / d.args[0]).resolve()
        if not path.is_relative_to(sources.docs_dir.resolve()) or not path.is_file():
            raise d.error(f"expected a cell name or a cell file under {sources.docs_dir}, got {d.args[0]!r}")
        return load_cell(path)
    try:
        return sources.cell(d.args[0])
    except KeyError as exc:  # derive.UnknownCellError lists the known cells
        raise d.error(str(exc)) from exc


def _latex_module(d: Directive):  # noqa: ANN202 - a module
    try:
        return importlib.import_module("derive.render.latex")
    except ModuleNotFoundError as exc:
        raise d.error(f"derive.render.latex is not available ({exc})") from exc


def _diagram_module(d: Directive):  # noqa: ANN202 - a module
    try:
        return importlib.import_module("derive.render.diagram")
    except ModuleNotFoundError as exc:
        raise d.error(f"derive.render.diagram is not available, so no diagram can be drawn ({exc})") from exc


DIAGRAM_VIEWS = ("step", "state-path", "unrolled")


def diagram_svg(d: Directive, cell: Cell, lang: str) -> str:
    """The SVG a ``diagram`` directive asks for: one step's graph (the
    default view, ``step``), the same with its state path highlighted
    (``state-path``), or the cell unrolled over time (``unrolled``)."""
    view = d.args[1] if len(d.args) > 1 else "step"
    if view not in DIAGRAM_VIEWS:
        raise d.error(f"unknown diagram view {view!r}; known views: {', '.join(DIAGRAM_VIEWS)}")
    module = _diagram_module(d)
    if view == "unrolled":
        return module.unrolled_svg(cell, lang)
    return module.svg(cell, lang, state_path=view == "state-path")


def diagram_html(svg: str) -> str:
    """A diagram in a box that scrolls sideways when the page is narrower
    than the diagram's readable size (see ``derive.css``: on a phone the
    diagram keeps its labels readable instead of shrinking to fit), and
    that the keyboard can scroll (``tabindex``), named by the SVG's title."""
    title = re.search(r"<title[^>]*>([^<]*)</title>", svg)
    label = f' aria-label="{title[1].replace(chr(34), "&quot;")}"' if title else ""
    return f'<div class="derive-diagram" role="region" tabindex="0"{label}>{svg}</div>'


def _plot_file(d: Directive, lang: str, sources: Sources) -> Path:
    name = d.args[0]
    if not PLOT_NAME.match(name):
        raise d.error(f"bad plot name {name!r} (letters, digits, '_', '-', '.')")
    path = sources.docs_dir / "assets" / "generated" / "experiments" / f"{name}.{lang}.svg"
    if not path.is_file():
        raise d.error(f"missing plot file {path} (generated by the experiments)")
    return path


COUNT_HEADERS = {
    "en": ("cell", "parameters", "with $n_x$ = {n_x}, $n_h$ = {n_h}"),
    "fr": ("cellule", "paramètres", "avec $n_x$ = {n_x}, $n_h$ = {n_h}"),
}


def counts_table(sources: Sources, lang: str, n_x: int = 10, n_h: int = 20,
                 names: tuple[str, ...] | None = None) -> list[str]:
    """Each cell's parameter count (every known cell, or ``names``), as a
    formula in n_x and n_h and as a number, summed from the shapes of its
    parameters."""
    import sympy

    from ..cells import NAMES

    sx, sh = sympy.symbols("n_x n_h", positive=True, integer=True)
    cell_h, count_h, value_h = COUNT_HEADERS.get(lang, COUNT_HEADERS["en"])
    rows = [f"| {cell_h} | {count_h} | {value_h.format(n_x=n_x, n_h=n_h)} |", "|---|---|--:|"]
    for name in names or NAMES:
        cell = sources.cell(name)
        total = sympy.Integer(0)
        for p in cell.params.values():
            rows_ = {"n_x": sx, "n_h": sh}[p.rows]
            cols = sum({"n_x": sx, "n_h": sh}[c] for c in p.cols) if p.cols else 1
            total += rows_ * cols
        formula = sympy.latex(sympy.factor(total))
        value = int(total.subs({sx: n_x, sh: n_h}))
        rows.append(f"| `{name}` | ${formula}$ | {value:,}".replace(",", "\u202f" if lang == "fr" else ",") + " |")
    return rows


STRUCTURE_WORDS = {
    "en": {"header": "| Jacobian | shape | reads a state at $t-1$ |", "full": "full", "diagonal": "diagonal",
           "zero": "zero", "yes": "yes", "no": "no",
           "classes": {"full": "full", "diagonal": "diagonal", "state-dependent": "state-dependent",
                       "state-independent": "state-independent", "linear scan": "linear scan"},
           "summary": "Classification, read off the derived Jacobian: **{}**.",
           "scan": "A linear scan: ${s} = a^{{(t)}} \\odot {p} + b^{{(t)}}$ with $a^{{(t)}} = {a}$ and "
                   "$b^{{(t)}} = {b}$, both functions of $x^{{(t)}}$ alone."},
    "fr": {"header": "| jacobienne | forme | lit un état en $t-1$ |", "full": "pleine", "diagonal": "diagonale",
           "zero": "nulle", "yes": "oui", "no": "non",
           "classes": {"full": "pleine", "diagonal": "diagonale", "state-dependent": "dépend de l’état",
                       "state-independent": "indépendante de l’état", "linear scan": "balayage linéaire"},
           "summary": "Classement, lu sur la jacobienne dérivée\u00a0: **{}**.",
           "scan": "Un balayage linéaire\u00a0: ${s} = a^{{(t)}} \\odot {p} + b^{{(t)}}$ avec $a^{{(t)}} = {a}$ et "
                   "$b^{{(t)}} = {b}$, fonctions de $x^{{(t)}}$ seulement."},
}


FILE_LANGUAGES = {".py": "python", ".cell": "text", ".toml": "toml", ".txt": "text"}


def file_block(d: Directive, sources: Sources) -> list[str]:
    """A file under the docs directory, shown whole as a code block: the page
    shows the very file that a test runs."""
    path = (sources.docs_dir / d.args[0]).resolve()
    if not path.is_relative_to(sources.docs_dir.resolve()):
        raise d.error(f"file: expected a path inside the docs directory, got {d.args[0]!r}")
    if not path.is_file():
        raise d.error(f"file: {d.args[0]!r} does not exist under {sources.docs_dir}")
    language = FILE_LANGUAGES.get(path.suffix, "text")
    return [f'```{language} title="{d.args[0]}"', *path.read_text(encoding="utf-8").rstrip("\n").split("\n"), "```"]


def structure_table(cell: Cell, lang: str) -> list[str]:
    """What the derived state Jacobian says of ``cell`` (:mod:`derive.structure`):
    a table per pair of states, the classification, and the linear scan if any."""
    import sympy

    from ..render.latex import CellLatexPrinter
    from ..structure import classify

    words = STRUCTURE_WORDS.get(lang, STRUCTURE_WORDS["en"])
    structure = classify(cell)
    printer = CellLatexPrinter(cell)
    prevs = {s.name: s.prev for s in cell.states}

    def sym(name: str) -> str:
        return printer.doprint(sympy.Symbol(name))

    rows = [words["header"], "|:--|:--|:--|"]
    for p in structure.pairs:
        jac = f"$\\partial {sym(p.of)} / \\partial {sym(prevs[p.wrt])}$"
        rows.append(f"| {jac} | {words[p.shape]} | {words['yes'] if p.state_dependent else words['no']} |")
    summary = ", ".join(words["classes"][w] for w in structure.classification.split(", "))
    out = [*rows, "", words["summary"].format(summary)]
    for scan in structure.scans:
        out += ["", words["scan"].format(s=sym(scan.state), p=sym(prevs[scan.state]),
                                         a=printer.doprint(scan.a), b=printer.doprint(scan.b))]
    return out


def _result_table(d: Directive, lang: str, sources: Sources) -> list[str]:
    """An experiment's committed results (``NAME.json``) as a Markdown table."""
    import json

    from ..experiments.tables import markdown

    path = _plot_file(d, lang, sources).with_name(f"{d.args[0]}.json")
    if not path.is_file():
        raise d.error(f"missing result file {path} (generated by the experiments)")
    return markdown(d.args[0], json.loads(path.read_text(encoding="utf-8")), lang).splitlines()


def params_table(cell: Cell, lang: str) -> list[str]:
    """The cell's parameters as a Markdown table: name, shape, and for a
    matrix on a concatenation, its column blocks (state columns first)."""
    name_h, shape_h, blocks_h = TABLE_HEADERS.get(lang, TABLE_HEADERS["en"])
    rows = [f"| {name_h} | {shape_h} | {blocks_h} |", "|---|---|---|"]
    for param in cell.params.values():
        rows_l = SIZE_LATEX[param.rows]
        if param.is_bias:
            shape = rows_l
        elif len(param.cols) == 1:
            shape = rf"{rows_l} \times {SIZE_LATEX[param.cols[0]]}"
        else:
            shape = rf"{rows_l} \times ({' + '.join(SIZE_LATEX[c] for c in param.cols)})"
        blocks = "—"
        if not param.is_bias and len(param.cols) > 1:
            base, _, sub = param.name.partition("_")
            parts = [rf"{base}_{{{sub}{label}}}" for label, _ in cell.weight_blocks(param.name)]
            blocks = "$[" + r",\ ".join(parts) + "]$"
        rows.append(f"| ${param.latex}$ | ${shape}$ | {blocks} |")
    return rows


def kernel_block(d: Directive, cell_name: str, sources: Sources) -> list[str]:
    """The committed kernel module of the cell as a fenced Python block."""
    path = sources.kernels_dir / f"{cell_name}.py"
    if not path.is_file():
        raise d.error(f"missing generated kernel {path} (run `derive build`)")
    code = path.read_text(encoding="utf-8").rstrip("\n")
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f'{fence} python title="derive/kernels/{cell_name}.py"', *code.split("\n"), fence]


_SVG_PROLOGUE = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->|<metadata>.*?</metadata>", re.S)


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document made fit to sit inside an HTML page.

    The XML prologue, comments and ``<metadata>`` go (matplotlib puts
    external RDF namespaces there), and every ``id`` is prefixed, with the
    references to it, so that two figures on one page never share an id.
    """
    svg = _SVG_PROLOGUE.sub("", svg).strip()
    if not svg.startswith("<svg"):
        raise ValueError(f"not an SVG document: {svg[:60]!r}")
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", prefix)
    ids = set(re.findall(r'\sid="([^"]+)"', svg))
    if ids:
        names = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        svg = re.sub(rf'(\sid=")({names})"', lambda m: f'{m[1]}{prefix}-{m[2]}"', svg)
        svg = re.sub(rf"#({names})(?![A-Za-z0-9_.:-])", lambda m: f"#{prefix}-{m[1]}", svg)
    return svg


def leftover_tokens(html: str) -> list[str]:
    """Slot tokens still present in ``html`` (each should be replaced)."""
    return SLOT_PATTERN.findall(html)
