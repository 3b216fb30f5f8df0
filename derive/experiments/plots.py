"""SVG plots of the results, per language and colour scheme, byte-identical across runs.

Uses matplotlib's object API with the SVG canvas (no pyplot, no global
backend switch). Text stays text in the SVG (``svg.fonttype = none``) so the
browser renders it in the page's font; a fixed ``svg.hashsalt`` and no date
in the metadata make the same data give the same bytes.

Each plot is drawn twice, for the site's light and dark palettes, on a
transparent background (``NAME.LANG.svg`` and ``NAME.LANG.dark.svg``); the
page shows the one of the current palette. The figures are 4.8 inches wide
with text of at least 10 pt, so that on a phone, where the figure is shrunk
to the width of the screen (about 360 CSS px), the smallest text is still
about 10 CSS px. Each SVG carries a ``<title>`` and an ``aria-label``, and
matplotlib's stylesheet is scoped to the figure so that inlined in a page
it styles nothing else.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..cells import NAMES
from .results import LANGUAGES, SCHEME_SUFFIXES

WIDTH = 4.8
"""Figure width in inches (461 CSS px at its natural size)."""

SVG_CLASS = "derive-plot"
"""The class of every plot's root element; its stylesheet is scoped to it."""

SCHEMES: dict[str, dict[str, Any]] = {
    "light": {
        "suffix": SCHEME_SUFFIXES["light"],
        "text": "#1f1f1f",
        "grid": "#b0b0b0",
        # matplotlib's tab10 and a few darker hues, readable on white
        "colours": ("#d62728", "#ff7f0e", "#2ca02c", "#17becf", "#1f77b4", "#9467bd", "#8c564b",
                    "#e377c2", "#7f7f7f", "#bcbd22", "#8c6d31", "#393b79"),
    },
    "dark": {
        "suffix": SCHEME_SUFFIXES["dark"],
        "text": "#e2e4e9",
        "grid": "#6b6f7a",
        # lighter shades of the same hues, readable on the dark palette's slate
        "colours": ("#ff7b7b", "#ffb056", "#6fdc7a", "#4fd8e8", "#7cb8ff", "#c4a2f0", "#d4a38f",
                    "#f7a6dc", "#c2c2c2", "#e0e05a", "#dcb66e", "#a3a9f5"),
    },
}
"""The two colour schemes: the site's light ("default") and dark ("slate") palettes."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
DASHES = ("solid", (0, (6, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (3, 1.5)))
"""Markers and dash patterns, taken in turn like the colours. There are as
many colours and markers as places (twelve), so that each of the first twelve
cells has a colour and a marker of its own; five dash patterns, a number prime
to twelve, keep the triples apart for the sixty first cells."""

GRADIENT_FLOOR = 1e-60
"""The lowest ratio the gradient-flow plot shows: a curve that falls below it
leaves the axis, and a marker on the lower edge shows where."""

BASE_STYLE = {
    "svg.hashsalt": "derive-experiments",
    "svg.fonttype": "none",
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 12,
    "axes.grid": True,
    "grid.alpha": 0.5,
    "grid.linewidth": 0.6,
    "figure.facecolor": "none",
    "axes.facecolor": "none",
    "savefig.facecolor": "none",
    "savefig.transparent": True,
    "legend.frameon": False,
}


def _scheme_style(scheme: str) -> dict[str, Any]:
    s = SCHEMES[scheme]
    return {
        **BASE_STYLE,
        "text.color": s["text"],
        "axes.labelcolor": s["text"],
        "axes.edgecolor": s["text"],
        "axes.titlecolor": s["text"],
        "xtick.color": s["text"],
        "ytick.color": s["text"],
        "grid.color": s["grid"],
        "legend.labelcolor": s["text"],
    }


def cell_style(cell: str, scheme: str) -> dict[str, Any]:
    """Colour, marker and dash pattern of ``cell``: by its place among the
    built-in cells, so that a cell looks the same in every figure, and
    overlapping curves stay apart by their markers and dashes."""
    index = NAMES.index(cell) if cell in NAMES else len(NAMES)
    colours = SCHEMES[scheme]["colours"]
    if len(colours) != len(MARKERS):
        raise ValueError(f"scheme {scheme!r}: expected {len(MARKERS)} colours, got {len(colours)}")
    return {
        "color": colours[index % len(colours)],
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": DASHES[index % len(DASHES)],
    }


TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "gf_title": "Gradient reaching the state k steps back, on sequences of length T = {length}",
        "gf_init": "At initialisation",
        "gf_trained": "After training (adding problem, T = {length})",
        "gf_x": "lag k (steps back from the last step T)",
        "gf_y": "‖∂L/∂s(T−k)‖ / ‖∂L/∂s(T)‖",
        "gf_band": "shaded: range over {n} seeds; s = the state followed",
        "gf_cell": "{cell} (s = {state})",
        "gf_floor": "▼: the mean falls below {floor} (off the axis)",
        "mem_title": "Adding problem: test error after training, at each sequence length T",
        "mem_x": "sequence length T",
        "mem_y": "test mean squared error",
        "mem_baseline": "trivial baseline (predict 1)",
        "mem_band": "shaded: range over {n} seeds",
        "mem_cell": "{cell}: n_h = {n_h}, {params} parameters",
        "gates_title": "The keep gate of each trained cell over one test sequence of T = {length} steps, "
        "marked steps {first} and {second}",
        "gates_x": "step t",
        "gates_panel": "{cell}: {gate}, keeps {keep} of c(t−1)",
        "gates_unit": "one unit",
        "gates_mean": "mean over the units",
        "gates_marked": "marked steps",
        "fb_title": "{cell} on the adding problem at T = {length}, by the bias added to {gate} at initialisation",
        "fb_error": "test error (MSE)",
        "fb_keep": "mean share kept, {keep}",
        "fb_x": "bias added to {bias} at initialisation",
        "fb_seed": "one seed",
        "fb_baseline": "trivial baseline (predict 1)",
        "fb_learnt": "learnt below this line",
        "fb_init": "at initialisation",
        "fb_trained": "after training",
    },
    "fr": {
        "gf_title": "Gradient qui atteint l’état k pas en arrière, sur des séquences de longueur T = {length}",
        "gf_init": "À l’initialisation",
        "gf_trained": "Après entraînement (addition, T = {length})",
        "gf_x": "décalage k (pas en arrière depuis le dernier pas T)",
        "gf_y": "‖∂L/∂s(T−k)‖ / ‖∂L/∂s(T)‖",
        "gf_band": "bandes colorées : étendue sur {n} graines ; s = l’état suivi",
        "gf_cell": "{cell} (s = {state})",
        "gf_floor": "▼ : la moyenne passe sous {floor} (hors du cadre)",
        "mem_title": "Problème de l’addition : erreur de test après entraînement, à chaque longueur T",
        "mem_x": "longueur de séquence T",
        "mem_y": "erreur quadratique moyenne de test",
        "mem_baseline": "référence triviale (prédire 1)",
        "mem_band": "bandes colorées : étendue sur {n} graines",
        "mem_cell": "{cell} : n_h = {n_h}, {params} paramètres",
        "gates_title": "La porte de conservation de chaque cellule entraînée sur une séquence de test "
        "de T = {length} pas, pas marqués {first} et {second}",
        "gates_x": "pas t",
        "gates_panel": "{cell} : {gate}, garde {keep} de c(t−1)",
        "gates_unit": "une unité",
        "gates_mean": "moyenne sur les unités",
        "gates_marked": "pas marqués",
        "fb_title": "{cell} sur le problème de l’addition à T = {length}, selon le biais ajouté à {gate} "
        "à l’initialisation",
        "fb_error": "erreur de test (EQM)",
        "fb_keep": "part gardée moyenne, {keep}",
        "fb_x": "biais ajouté à {bias} à l’initialisation",
        "fb_seed": "une graine",
        "fb_baseline": "référence triviale (prédire 1)",
        "fb_learnt": "appris sous cette ligne",
        "fb_init": "à l’initialisation",
        "fb_trained": "après entraînement",
    },
}

# The figures' French text is set in the page's typography: a narrow
# no-break space before « : » and « ; ».
for _key, _text in TEXTS["fr"].items():
    TEXTS["fr"][_key] = _text.replace(" :", "\u202f:").replace(" ;", "\u202f;")


@contextmanager
def _style(scheme: str) -> Iterator[None]:
    with matplotlib.rc_context(_scheme_style(scheme)):
        yield


_STYLE_ELEMENT = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.S)
_CSS_RULE = re.compile(r"\s*([^{}@]+?)\s*\{([^{}]*)\}\s*")


def scope_css(css: str, scope: str) -> str:
    """Every rule of ``css`` restricted to descendants of ``scope``.

    Matplotlib's SVGs carry ``*{stroke-linejoin: round; …}``: inlined in a
    page it would apply to the whole page. Only plain rules are expected;
    anything else (an at-rule, a brace out of place) raises ``ValueError``.
    """
    out, position = [], 0
    for match in _CSS_RULE.finditer(css):
        if match.start() != position:
            break
        selectors = ", ".join(f"{scope} {s.strip()}" for s in match[1].split(","))
        out.append(f"{selectors}{{{match[2]}}}")
        position = match.end()
    if position != len(css):
        raise ValueError(f"css: expected plain rules, got {css[position:position + 60]!r}")
    return "".join(out)


def finish_svg(svg: str, title: str, scheme: str) -> str:
    """Matplotlib's SVG made fit for the site: its root gets the plot class,
    the scheme's class, ``role="img"`` and an ``aria-label``; a ``<title>``
    comes first; its stylesheet is scoped to the plot."""
    root = re.search(r"<svg\b[^>]*>", svg)
    if root is None:
        raise ValueError("svg: no <svg> element")
    label = escape(title, quote=True)
    attributes = f' class="{SVG_CLASS} {SVG_CLASS}-{scheme}" role="img" aria-label="{label}"'
    opened = root[0][:-1] + attributes + ">"
    svg = svg[: root.start()] + opened + f"\n <title>{escape(title, quote=False)}</title>" + svg[root.end():]
    return _STYLE_ELEMENT.sub(lambda m: m[1] + scope_css(m[2], f"svg.{SVG_CLASS}") + m[3], svg)


def _save(figure: Figure, path: Path, title: str, scheme: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasSVG(figure)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    path.write_text(finish_svg(buffer.getvalue(), title, scheme), encoding="utf-8")


def _gradient_panel(axes: Axes, data: dict[str, Any], condition: str, title: str,
                    words: dict[str, str], scheme: str) -> None:
    lags = data["lags"]
    for cell, entry in data["cells"].items():
        curve = entry[condition]
        style = cell_style(cell, scheme)
        axes.fill_between(lags, curve["ratio_min"], curve["ratio_max"], color=style["color"],
                          alpha=0.15, linewidth=0)
        axes.plot(lags, curve["ratio_geomean"], markersize=4, linewidth=1.4,
                  label=words["gf_cell"].format(cell=cell, state=entry["state"]), **style)
        leaves = _floor_crossing(lags, curve["ratio_geomean"], GRADIENT_FLOOR)
        if leaves is not None:
            # where the mean leaves the axis: a down-pointing mark on the lower edge
            axes.plot([leaves], [GRADIENT_FLOOR], linestyle="none", marker="v", markersize=8,
                      color=style["color"], clip_on=False, zorder=3)
    axes.set_yscale("log")
    axes.set_ylim(GRADIENT_FLOOR, 5.0)
    axes.set_title(title, loc="left")


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _floor_crossing(lags: list[int], ratios: list[float], floor: float) -> float | None:
    """The lag at which the curve ``ratios`` first falls below ``floor``,
    interpolated as the plot draws it (straight between points on a log
    scale); None if it never does."""
    for index, ratio in enumerate(ratios):
        if ratio < floor:
            if index == 0:
                return float(lags[0])
            high, low = math.log10(ratios[index - 1]), math.log10(ratio)
            share = (high - math.log10(floor)) / (high - low)
            return lags[index - 1] + share * (lags[index] - lags[index - 1])
    return None


def _power_of_ten(value: float) -> str:
    """``1e-60`` as ``10⁻⁶⁰``, for a legend."""
    exponent = round(math.log10(value))
    if not math.isclose(10.0 ** exponent, value):
        raise ValueError(f"value: expected a power of ten, got {value!r}")
    return "10" + str(exponent).translate(_SUPERSCRIPTS)


def gradient_flow_figure(data: dict[str, Any], seeds: int, lang: str, scheme: str) -> tuple[Figure, str]:
    """The ratio of gradients against the lag: at initialisation (top) and
    after training (bottom), the legend under both."""
    words = TEXTS[lang]
    length = data["sequence_length"]
    figure = Figure(figsize=(WIDTH, 7.4), layout="constrained")
    init_axes, trained_axes = figure.subplots(2, 1, sharex=True)
    _gradient_panel(init_axes, data, "init", words["gf_init"], words, scheme)
    _gradient_panel(trained_axes, data, "trained", words["gf_trained"].format(length=length), words, scheme)
    trained_axes.set_xlabel(words["gf_x"])
    for axes in (init_axes, trained_axes):
        axes.set_ylabel(words["gf_y"])
    # Ratios are at most about 1; below, a fixed floor: a curve that falls
    # under it (some reach the float64 limit, 1e-308) would squeeze the others
    # into the top of the axis.
    handles, labels = trained_axes.get_legend_handles_labels()
    title = words["gf_band"].format(n=seeds) + "\n" + words["gf_floor"].format(floor=_power_of_ten(GRADIENT_FLOOR))
    figure.legend(handles, labels, loc="outside lower center", ncols=2, title=title)
    return figure, words["gf_title"].format(length=length)


def memory_figure(data: dict[str, Any], seeds: int, lang: str, scheme: str) -> tuple[Figure, str]:
    """Test error against sequence length, per cell, with the baseline; the
    legend under the axes."""
    words = TEXTS[lang]
    lengths = data["lengths"]
    # the legend under the axes has a line per cell: the figure grows with it
    figure = Figure(figsize=(WIDTH, 4.4 + 0.22 * (len(data["cells"]) + 1)), layout="constrained")
    axes = figure.subplots()
    keys = [str(t) for t in lengths]
    for cell, entry in data["cells"].items():
        style = cell_style(cell, scheme)
        axes.fill_between(lengths, [entry["test_mse_min"][k] for k in keys],
                          [entry["test_mse_max"][k] for k in keys], color=style["color"], alpha=0.15, linewidth=0)
        axes.plot(lengths, [entry["test_mse_mean"][k] for k in keys], markersize=5, linewidth=1.4,
                  label=words["mem_cell"].format(cell=cell, n_h=entry["n_h"], params=entry["params"]), **style)
    axes.plot(lengths, [data["baseline_mse"][k] for k in keys], color=SCHEMES[scheme]["text"],
              linestyle="--", linewidth=1.2, label=words["mem_baseline"])
    axes.set_yscale("log")
    axes.set_xlabel(words["mem_x"])
    axes.set_ylabel(words["mem_y"])
    axes.set_xticks(lengths)
    figure.legend(loc="outside lower center", ncols=1, title=words["mem_band"].format(n=seeds))
    return figure, words["mem_title"]


def _decimals(axis: Any, lang: str) -> None:
    """Plain numbers on a linear axis, with a decimal comma in French."""
    mark = "," if lang == "fr" else "."
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}".replace(".", mark)))


def _math(latex: str) -> str:
    return f"${latex}$"


def gates_figure(data: dict[str, Any], seeds: int, lang: str, scheme: str) -> tuple[Figure, str]:
    """One panel per gated cell: its keep gate at every step of the shown
    test sequence, one thin line per unit and their mean, the two marked
    steps as vertical lines."""
    del seeds  # one model is shown; the table gives every seed
    words = TEXTS[lang]
    cells = {cell: entry for cell, entry in data["cells"].items() if "shown_gate" in entry}
    if not cells:
        raise ValueError("data: no cell has the traces of the shown sequence ('shown_gate')")
    marked = data["shown_sequence"]["marked_steps"]
    text_colour = SCHEMES[scheme]["text"]
    figure = Figure(figsize=(WIDTH, 1.7 * len(cells) + 1.3), layout="constrained")
    panels = figure.subplots(len(cells), 1, sharex=True, squeeze=False)[:, 0]
    for axes, (cell, entry) in zip(panels, cells.items(), strict=True):
        colour = cell_style(cell, scheme)["color"]
        units = entry["shown_gate"]
        steps = list(range(1, len(units[0]) + 1))
        for index, unit in enumerate(units):
            axes.plot(steps, unit, color=colour, linewidth=0.7, alpha=0.45,
                      label=words["gates_unit"] if index == 0 else None)
        mean = [sum(values) / len(values) for values in zip(*units, strict=True)]
        axes.plot(steps, mean, color=text_colour, linewidth=1.6,
                  label=words["gates_mean"])
        for index, step in enumerate(marked):
            axes.axvline(step, color=text_colour, linestyle=(0, (4, 2)), linewidth=1.1,
                         label=words["gates_marked"] if index == 0 else None)
        gate = _math(entry["gate_latex"])
        keep = gate if entry["keep"] == entry["gate"] else _math("1-" + entry["gate_latex"])
        axes.set_title(words["gates_panel"].format(cell=cell, gate=gate, keep=keep), loc="left")
        axes.set_ylim(-0.03, 1.03)
        axes.set_yticks([0, 0.5, 1])
        _decimals(axes.yaxis, lang)
        _decimals(axes.xaxis, lang)
        axes.set_ylabel(gate)
        axes.set_xlim(1, len(steps))
    panels[-1].set_xlabel(words["gates_x"])
    handles, labels = panels[-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2)
    title = words["gates_title"].format(length=data["sequence_length"], first=marked[0], second=marked[1])
    return figure, title


def forget_bias_figure(data: dict[str, Any], seeds: int, lang: str, scheme: str) -> tuple[Figure, str]:
    """Per cell, two panels: the test error of every seed by bias, and the
    mean keep share at initialisation and after training; one legend under all."""
    del seeds  # every seed is drawn
    words = TEXTS[lang]
    text_colour = SCHEMES[scheme]["text"]
    biases = data["biases"]
    cells = data["cells"]
    figure = Figure(figsize=(WIDTH, 5.6 * len(cells) + 0.4), layout="constrained")
    rows = figure.subplots(2 * len(cells), 1, squeeze=False)[:, 0]
    title = ""
    for row, (cell, entry) in enumerate(cells.items()):
        error_axes, keep_axes = rows[2 * row], rows[2 * row + 1]
        style = cell_style(cell, scheme)
        gate = _math(entry["gate_latex"])
        keep = gate if entry["keep"] == entry["gate"] else _math("1-" + entry["gate_latex"])
        bias_name = _math(entry["bias"].replace("_", "_{", 1) + "}")
        spread = 0.07
        for b_index, bias in enumerate(biases):
            runs = entry["biases"][f"{bias:g}"]
            n = len(runs["test_mse"])
            xs = [bias + spread * (i - (n - 1) / 2) for i in range(n)]
            error_axes.plot(xs, runs["test_mse"], linestyle="none", marker=style["marker"], markersize=6,
                            color=style["color"], label=words["fb_seed"] if b_index == 0 and row == 0 else None)
            keep_axes.plot(xs, runs["keep_init"], linestyle="none", marker="o", markersize=5,
                           markerfacecolor="none", color=text_colour,
                           label=words["fb_init"] if b_index == 0 and row == 0 else None)
            keep_axes.plot(xs, runs["keep_trained"], linestyle="none", marker=style["marker"], markersize=6,
                           color=style["color"], alpha=0.8,
                           label=words["fb_trained"] if b_index == 0 and row == 0 else None)
        baseline = data["baseline_mse"]
        error_axes.axhline(baseline, color=text_colour, linestyle="--", linewidth=1.1,
                           label=words["fb_baseline"] if row == 0 else None)
        error_axes.axhline(baseline * data["learnt_below_fraction_of_baseline"], color=text_colour,
                           linestyle=":", linewidth=1.1, label=words["fb_learnt"] if row == 0 else None)
        error_axes.set_yscale("log")
        error_axes.set_ylabel(words["fb_error"])
        keep_axes.set_ylabel(words["fb_keep"].format(keep=keep))
        keep_axes.set_ylim(0, 1.02)
        _decimals(keep_axes.yaxis, lang)
        for axes in (error_axes, keep_axes):
            axes.set_xticks(biases)
            _decimals(axes.xaxis, lang)
            axes.set_xlim(min(biases) - 0.4, max(biases) + 0.4)
        keep_axes.set_xlabel(words["fb_x"].format(bias=bias_name))
        error_axes.set_title(f"{cell}, T = {data['sequence_length']}", loc="left")
        title = title or words["fb_title"].format(cell=cell, length=data["sequence_length"], gate=entry["gate"])
    handles, labels = [], []
    for axes in rows[:2]:
        more = axes.get_legend_handles_labels()
        handles += more[0]
        labels += more[1]
    figure.legend(handles, labels, loc="outside lower center", ncols=2)
    return figure, title


FIGURES: dict[str, Callable[[dict[str, Any], int, str, str], tuple[Figure, str]]] = {
    "gradient-flow": gradient_flow_figure,
    "memory": memory_figure,
    "gates": gates_figure,
    "forget-bias": forget_bias_figure,
}
"""The figure of each experiment: (data, seed count, language, scheme) ->
(figure, title)."""


def plot_path(out: Path, experiment: str, lang: str, scheme: str) -> Path:
    """``NAME.LANG.svg`` for the light scheme, ``NAME.LANG.dark.svg`` for the dark one."""
    return out / f"{experiment}.{lang}{SCHEMES[scheme]['suffix']}.svg"


def write_plots(experiment: str, data: dict[str, Any], seeds: int, out: Path) -> list[Path]:
    """Write the plot of ``experiment`` in every language and scheme; return the paths."""
    if experiment not in FIGURES:
        raise ValueError(f"experiment: expected one of {', '.join(FIGURES)}, got {experiment!r}")
    paths = []
    for lang in LANGUAGES:
        for scheme in SCHEMES:
            with _style(scheme):
                figure, title = FIGURES[experiment](data, seeds, lang, scheme)
                path = plot_path(out, experiment, lang, scheme)
                _save(figure, path, title, scheme)
            paths.append(path)
    return paths
