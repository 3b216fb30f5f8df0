"""The figures the site quotes from the experiments agree with the committed
results, and the French pages quote the same figures as the English ones.

The prose about the cells beyond the thread (docs/experiments.md, section
"What the results say", and the paragraph on the experiments in each cell's
section of docs/beyond.md) is written by hand: each figure it gives is
recomputed here from the JSON results and looked for, as a figure, in the
paragraph that makes the claim, in both languages. A figure typed wrong, or
a rerun that changes the results without the prose, fails.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from derive.experiments.plots import GRADIENT_FLOOR

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "assets" / "generated" / "experiments"
PAGES = {"en": "{}.md", "fr": "{}.fr.md"}
SECTIONS = {"en": ("## What the results say", "## Summary", "## A measurement"),
            "fr": ("## Ce que disent les résultats", "## En résumé", "## Une mesure")}
EXPERIMENTS_LINK = {"en": "In the [experiments](experiments.md)", "fr": "Dans les [expériences](experiments.md)"}
THREAD_GRUS = ("gru_simple", "gru", "gru_torch")

_POWER = re.compile(r"10\^\{?(−|-)?(\d+)\}?")
_NUMBER = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)?)(\s?%)?")


def figures(text: str) -> list[str]:
    """The figures of ``text`` in order, spelt the same way in both languages:
    a decimal point, ``1e-12`` for $10^{-12}$, ``2.5%`` for 2,5 %."""
    out = []
    position = 0
    text = _POWER.sub(lambda m: f" 1e{'-' if m[1] else ''}{m[2]} ", text)
    for match in re.finditer(r"1e-?\d+|" + _NUMBER.pattern, text):
        if match.start() < position:
            continue
        token = match[0]
        if not token.startswith("1e"):
            token = match[1].replace(",", ".") + ("%" if match[2] else "")
        out.append(token)
        position = match.end()
    return out


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))["data"]


MEMORY = _load("memory")
FLOW = _load("gradient-flow")
GATES = _load("gates")


def _page(page: str, lang: str) -> str:
    return (DOCS / PAGES[lang].format(page)).read_text(encoding="utf-8")


def _section(lang: str) -> str:
    text = _page("experiments", lang)
    start, _, end = SECTIONS[lang]
    return text[text.index(start): text.index(end)]


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def results_paragraph(lang: str, cell: str) -> str:
    """The paragraph of "What the results say" whose bold lead names ``cell``."""
    found = [p for p in _paragraphs(_section(lang)) if p.startswith("**") and f"`{cell}`" in p.split("**")[1]]
    assert len(found) == 1, f"{lang}: expected one paragraph led by `{cell}`, found {len(found)}"
    return found[0]


def beyond_paragraph(lang: str, cell: str) -> str:
    """The paragraph on the experiments in ``cell``'s section of the chapter
    "Beyond the thread" (the section holding ``derive: forward CELL``)."""
    sections = re.split(r"\n## ", _page("beyond", lang))
    section = [s for s in sections if f"{{{{ derive: forward {cell} }}}}" in s]
    assert len(section) == 1, f"{lang}: no section of beyond for {cell}"
    found = [p for p in _paragraphs(section[0]) if p.startswith(EXPERIMENTS_LINK[lang])]
    assert len(found) == 1, f"{lang}: expected one paragraph on the experiments in the section of {cell}"
    return found[0]


def _sig(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}g}"


def _power(value: float) -> str:
    return f"1e{round(math.log10(value))}"


def _pct(value: float) -> str:
    return f"{100 * value:.2g}%"


def _mse(cell: str, length: int = 200) -> float:
    return MEMORY["cells"][cell]["test_mse_mean"][str(length)]


def _lag(condition: str, cell: str, lag: int) -> float:
    return FLOW["cells"][cell][condition]["ratio_geomean"][FLOW["lags"].index(lag)]


def _lag100(condition: str, cell: str) -> float:
    return FLOW["summary"][condition][cell]


def _learnt(cell: str) -> list[int]:
    return [MEMORY["cells"][cell]["seeds_learnt"][str(t)] for t in MEMORY["lengths"]]


SEEDS = len(MEMORY["cells"]["rnn"]["test_mse"]["10"])
BOUND = 1 / math.sqrt(MEMORY["cells"]["indrnn"]["n_h"])

# Each claim: the cell whose paragraph makes it, and the figures it quotes,
# computed from the results.
RESULTS_CLAIMS: dict[str, Callable[[], list[str]]] = {
    "mgu": lambda: [
        _sig(_mse("mgu"), 1),
        _sig(min(_mse(c) for c in THREAD_GRUS), 1), _sig(max(_mse(c) for c in THREAD_GRUS), 2),
        _sig(_lag100("trained", "mgu")),
        _sig(min(_lag100("trained", c) for c in THREAD_GRUS)), _sig(max(_lag100("trained", c) for c in THREAD_GRUS)),
        *[_sig(k) for k in GATES["cells"]["mgu"]["keep_mean"]],
        *[str(n) for n in GATES["cells"]["mgu"]["holding_units"]],
        str(GATES["cells"]["mgu"]["n_h"]), f"{GATES['holding_threshold']:g}",
    ],
    "lstm_peephole": lambda: [
        _sig(min(GATES["cells"]["lstm_peephole"]["gate_mean"])), _sig(max(GATES["cells"]["lstm_peephole"]["gate_mean"])),
        _power(_lag100("trained", "lstm_peephole")),
    ],
    "min_gru": lambda: [
        str(MEMORY["cells"]["min_gru"]["n_h"]), str(MEMORY["cells"]["min_lstm"]["n_h"]), str(MEMORY["cells"]["gru"]["n_h"]),
        f"{_lag('init', 'min_gru', 1):.2f}",
        _sig(_lag100("trained", "min_gru")), _sig(_lag100("trained", "min_lstm")),
        *[str(n) for n in GATES["cells"]["min_gru"]["holding_units"]],
        _sig(_mse("min_gru")), _sig(_mse("min_lstm")),
        _pct(MEMORY["summary"]["cells"]["min_gru"]["relative_to_baseline"]),
        _pct(MEMORY["summary"]["cells"]["min_lstm"]["relative_to_baseline"]),
    ],
    "indrnn": lambda: [
        str(MEMORY["lengths"][0]), _sig(_mse("indrnn", MEMORY["lengths"][0])),
        _sig(_lag("init", "indrnn", 1)), _power(_lag100("init", "indrnn")),
        str(MEMORY["cells"]["indrnn"]["n_h"]), _sig(BOUND), _power(BOUND ** 10),
        str(MEMORY["training"]["steps"]), _sig(_lag("trained", "indrnn", 1)),
    ],
}

BEYOND_CLAIMS: dict[str, Callable[[], list[str]]] = {
    "mgu": lambda: [str(MEMORY["lengths"][-1]), _sig(_mse("mgu"), 1)],
    # "every seed learns up to 50 steps, two of three at 100 and none at 200"
    "lstm_peephole": lambda: [str(t) for t in MEMORY["lengths"][_learnt("lstm_peephole").index(SEEDS - 1) - 1:]],
    "min_gru": lambda: [str(MEMORY["training"]["param_target"]), str(MEMORY["cells"]["min_gru"]["n_h"]),
                        str(MEMORY["cells"]["gru"]["n_h"]), str(MEMORY["lengths"][-1])],
    "min_lstm": lambda: [str(MEMORY["cells"]["min_lstm"]["n_h"]), _sig(_mse("min_lstm"))],
    "indrnn": lambda: [str(MEMORY["lengths"][0]), _sig(BOUND), str(MEMORY["cells"]["indrnn"]["n_h"]),
                       _sig(_lag("init", "indrnn", 1))],
}


def test_figures_reads_both_languages_the_same_way() -> None:
    assert figures("0,0033 et 2,5\u00a0% puis $10^{-121}$, 171") == ["0.0033", "2.5%", "1e-121", "171"]
    assert figures("0.0033 and 2.5% then $10^{-121}$, 171") == ["0.0033", "2.5%", "1e-121", "171"]


@pytest.mark.parametrize("lang", PAGES)
@pytest.mark.parametrize("cell", RESULTS_CLAIMS)
def test_results_prose_quotes_the_results(cell: str, lang: str) -> None:
    quoted = figures(results_paragraph(lang, cell))
    missing = [f for f in RESULTS_CLAIMS[cell]() if f not in quoted]
    assert not missing, f"{lang}, paragraph on `{cell}`: the results give {missing}, the page quotes {quoted}"


@pytest.mark.parametrize("lang", PAGES)
@pytest.mark.parametrize("cell", BEYOND_CLAIMS)
def test_beyond_prose_quotes_the_results(cell: str, lang: str) -> None:
    quoted = figures(beyond_paragraph(lang, cell))
    missing = [f for f in BEYOND_CLAIMS[cell]() if f not in quoted]
    assert not missing, f"{lang}, beyond, section of {cell}: the results give {missing}, the page quotes {quoted}"


def test_the_claims_in_words_hold() -> None:
    """What the bold leads say in words: who learns every length with every
    seed, who learns none, and the peephole LSTM's count being the LSTM's."""
    for cell in ("mgu", "min_gru", "min_lstm"):
        assert _learnt(cell) == [SEEDS] * len(MEMORY["lengths"]), cell
    assert _learnt("indrnn") == [0] * len(MEMORY["lengths"])
    assert _learnt("lstm_peephole") == _learnt("lstm") == [SEEDS, SEEDS, SEEDS - 1, 0]
    assert max(GATES["cells"]["lstm_peephole"]["gate_mean"]) < 0.5  # "less than half of the memory"


@pytest.mark.parametrize("lang", PAGES)
def test_the_gradient_floor_stated_is_the_plots(lang: str) -> None:
    intro = _page("experiments", lang).split("{{ derive: plot gradient-flow }}")[0]
    assert _power(GRADIENT_FLOOR) in figures(intro.split("\n## ")[-1])


def test_french_and_english_quote_the_same_figures() -> None:
    """Paragraph by paragraph, the same figures (in any order: the two
    languages may build a sentence differently)."""
    pairs = [(results_paragraph("en", c), results_paragraph("fr", c)) for c in RESULTS_CLAIMS]
    pairs += [(beyond_paragraph("en", c), beyond_paragraph("fr", c)) for c in BEYOND_CLAIMS]
    for en, fr in pairs:
        assert sorted(figures(en)) == sorted(figures(fr)), (
            f"English and French differ:\n{figures(en)}\n{figures(fr)}\n{en[:80]!r}")


def _paragraph(lang: str, opening: str) -> str:
    text = (DOCS / PAGES[lang].format("experiments")).read_text(encoding="utf-8")
    start = text.index(opening)
    return text[start:text.index("\n\n", start)]


_COUNTS = {"en": {0: "none", 1: "one", 2: "two", 3: "three", 4: "four", 5: "all five"},
           "fr": {0: "aucune", 1: "une", 2: "deux", 3: "trois", 4: "quatre", 5: "toutes les cinq"}}


@pytest.mark.parametrize(("lang", "opening", "phrases"), [
    ("en", "**The peephole LSTM makes more", ("With 0 or 1 added, {0}", "With 2 added, {2}", "with 3 {3}")),
    ("fr", "**Le LSTM à judas tire davantage", ("Avec 0 ou 1 ajouté, {0}", "Avec 2 ajouté,\n{2}", "avec 3 {3}")),
])
def test_the_peephole_forget_bias_figures_are_its_results(lang: str, opening: str, phrases: tuple[str, ...]) -> None:
    """The seeds that learn with each added bias, in words, and the first and
    last step at which one did, as forget-bias.json has them."""
    cell = _load("forget-bias")["cells"]["lstm_peephole"]["biases"]
    learnt = [cell[b]["seeds_learnt"] for b in ("0", "1", "2", "3")]
    assert learnt[0] == learnt[1]  # the prose says "0 or 1"
    paragraph = _paragraph(lang, opening)
    words = [_COUNTS[lang][n] for n in learnt]
    for phrase in phrases:
        assert phrase.format(*words) in paragraph, phrase.format(*words)
    steps = [s for b in cell for s in cell[b]["learnt_at_step"] if s is not None]
    quoted = figures(paragraph)
    assert str(min(steps)) in quoted and str(max(steps)) in quoted
