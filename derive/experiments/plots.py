"""SVG plots of the results, one per language, byte-identical across runs.

Uses matplotlib's object API with the SVG canvas (no pyplot, no global
backend switch). Text stays text in the SVG (``svg.fonttype = none``) so the
browser renders it in the page's font; a fixed ``svg.hashsalt`` and no date
in the metadata make the same data give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

LANGUAGES: tuple[str, ...] = ("en", "fr")

COLOURS: dict[str, str] = {
    "rnn": "#d62728",
    "gru_simple": "#ff7f0e",
    "gru": "#2ca02c",
    "gru_torch": "#17becf",
    "lstm": "#1f77b4",
}

STYLE = {
    "svg.hashsalt": "derive-experiments",
    "svg.fonttype": "none",
    "font.size": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "gf_title": "Gradient reaching the state k steps back",
        "gf_init": "At initialisation",
        "gf_trained": "After training (adding problem, T = {length})",
        "gf_x": "lag k (steps back)",
        "gf_y": "‖∂L/∂c(t−k)‖ / ‖∂L/∂c(t)‖",
        "gf_band": "range over {n} seeds",
        "mem_title": "Adding problem: test error after training",
        "mem_x": "sequence length T",
        "mem_y": "test mean squared error",
        "mem_baseline": "trivial baseline (predict 1)",
        "mem_band": "range over {n} seeds",
        "mem_cell": "{cell}: n_h = {n_h}, {params} parameters",
    },
    "fr": {
        "gf_title": "Gradient qui atteint l’état k pas en arrière",
        "gf_init": "À l’initialisation",
        "gf_trained": "Après entraînement (problème de l’addition, T = {length})",
        "gf_x": "décalage k (pas en arrière)",
        "gf_y": "‖∂L/∂c(t−k)‖ / ‖∂L/∂c(t)‖",
        "gf_band": "étendue sur {n} graines",
        "mem_title": "Problème de l’addition : erreur de test après entraînement",
        "mem_x": "longueur de séquence T",
        "mem_y": "erreur quadratique moyenne de test",
        "mem_baseline": "référence triviale (prédire 1)",
        "mem_band": "étendue sur {n} graines",
        "mem_cell": "{cell} : n_h = {n_h}, {params} paramètres",
    },
}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(STYLE):
        yield


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasSVG(figure)
    figure.savefig(path, format="svg", metadata={"Date": None})


def _cell_label(cell: str, state: str) -> str:
    return f"{cell} ({state})"


def _gradient_panel(axes: Axes, data: dict[str, Any], condition: str, title: str) -> None:
    lags = data["lags"]
    for cell, entry in data["cells"].items():
        curve = entry[condition]
        colour = COLOURS.get(cell, "black")
        axes.fill_between(lags, curve["ratio_min"], curve["ratio_max"], color=colour, alpha=0.15, linewidth=0)
        axes.plot(lags, curve["ratio_geomean"], color=colour, marker="o", markersize=3,
                  label=_cell_label(cell, entry["state"]))
    axes.set_yscale("log")
    axes.set_title(title)


def gradient_flow_figure(data: dict[str, Any], seeds: int, lang: str) -> Figure:
    """The ratio of gradients against the lag, at initialisation and after training."""
    words = TEXTS[lang]
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    init_axes, trained_axes = figure.subplots(1, 2, sharey=True)
    _gradient_panel(init_axes, data, "init", words["gf_init"])
    _gradient_panel(trained_axes, data, "trained", words["gf_trained"].format(length=data["sequence_length"]))
    for axes in (init_axes, trained_axes):
        axes.set_xlabel(words["gf_x"])
    init_axes.set_ylabel(words["gf_y"])
    # Ratios are at most about 1; below, show every mean curve with room to
    # spare and let the range bands run off the axis where a seed underflows.
    lowest = min(min(entry[c]["ratio_geomean"]) for entry in data["cells"].values() for c in ("init", "trained"))
    init_axes.set_ylim(10.0 ** (math.floor(math.log10(lowest)) - 5), 5.0)
    trained_axes.legend(loc="lower left", fontsize=8,
                        title=words["gf_band"].format(n=seeds), title_fontsize=8)
    figure.suptitle(words["gf_title"])
    return figure


def memory_figure(data: dict[str, Any], seeds: int, lang: str) -> Figure:
    """Test error against sequence length, per cell, with the baseline."""
    words = TEXTS[lang]
    lengths = data["lengths"]
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.subplots()
    for cell, entry in data["cells"].items():
        colour = COLOURS.get(cell, "black")
        keys = [str(t) for t in lengths]
        axes.fill_between(lengths, [entry["test_mse_min"][k] for k in keys],
                          [entry["test_mse_max"][k] for k in keys], color=colour, alpha=0.15, linewidth=0)
        axes.plot(lengths, [entry["test_mse_mean"][k] for k in keys], color=colour, marker="o",
                  markersize=4, label=words["mem_cell"].format(cell=cell, n_h=entry["n_h"], params=entry["params"]))
    axes.plot(lengths, [data["baseline_mse"][str(t)] for t in lengths], color="black",
              linestyle="--", label=words["mem_baseline"])
    axes.set_yscale("log")
    axes.set_xlabel(words["mem_x"])
    axes.set_ylabel(words["mem_y"])
    axes.set_xticks(lengths)
    axes.legend(fontsize=8, loc="lower right", title=words["mem_band"].format(n=seeds), title_fontsize=8)
    axes.set_title(words["mem_title"])
    return figure


def write_plots(experiment: str, data: dict[str, Any], seeds: int, out: Path) -> list[Path]:
    """Write ``<experiment>.<lang>.svg`` for every language; return the paths."""
    make = {"gradient-flow": gradient_flow_figure, "memory": memory_figure}[experiment]
    paths = []
    with _style():
        for lang in LANGUAGES:
            path = out / f"{experiment}.{lang}.svg"
            _save(make(data, seeds, lang), path)
            paths.append(path)
    return paths
