"""The experiments' results as Markdown tables, in English or French.

The site's ``{{ derive: table NAME }}`` directive calls :func:`markdown`
on the committed JSON at build time, so the tables always show the data
the plots were drawn from.
"""

from __future__ import annotations

from typing import Any

from .memory import markdown_table

_GRADIENT_WORDS = {
    "en": {
        "cell": "cell",
        "init": "at initialisation",
        "trained": "after training",
        "vs": "relative to rnn",
        "caption": "‖∂L/∂s(T−{k})‖ / ‖∂L/∂s(T)‖ at lag k = {k} over sequences of length {T}: "
        "geometric mean over the seeds and sequences; after training on the adding problem at T = {T}.",
    },
    "fr": {
        "cell": "cellule",
        "init": "à l’initialisation",
        "trained": "après entraînement",
        "vs": "rapport au rnn",
        "caption": "‖∂L/∂s(T−{k})‖ / ‖∂L/∂s(T)‖ au décalage k = {k} sur des séquences de longueur {T}\u202f: "
        "moyenne géométrique sur les graines et les séquences\u202f; après entraînement sur le problème "
        "de l’addition à T = {T}.",
    },
}


def _number(value: float, lang: str) -> str:
    text = f"{value:.2g}"
    return text.replace(".", ",") if lang == "fr" else text


def gradient_table(data: dict[str, Any], lang: str) -> str:
    """The gradient ratio at the summary lag, per cell, at init and trained."""
    words = _GRADIENT_WORDS[lang]
    summary = data["summary"]
    rows = [
        f"| {words['cell']} | {words['init']} | {words['vs']} | {words['trained']} | {words['vs']} |",
        "|:--|--:|--:|--:|--:|",
    ]
    for cell, init in summary["init"].items():
        trained = summary["trained"][cell]
        rel_init = summary["init_relative_to_rnn"].get(cell)
        rel_trained = summary["trained_relative_to_rnn"].get(cell)
        rel = [_number(r, lang) if r is not None else "1" for r in (rel_init, rel_trained)]
        rows.append(f"| `{cell}` | {_number(init, lang)} | {rel[0]} | {_number(trained, lang)} | {rel[1]} |")
    caption = words["caption"].format(k=summary["lag"], T=data["sequence_length"])
    return "\n".join(rows) + "\n\n" + caption + "\n"


def markdown(name: str, result: dict[str, Any], lang: str) -> str:
    """The table of experiment ``name`` ("memory" or "gradient-flow") from
    its result file's content, in ``lang``."""
    if lang not in _GRADIENT_WORDS:
        raise ValueError(f"lang: expected one of {', '.join(_GRADIENT_WORDS)}, got {lang!r}")
    if name == "memory":
        return markdown_table(result["data"], result["seeds"], lang)
    if name == "gradient-flow":
        return gradient_table(result["data"], lang)
    raise ValueError(f"name: expected 'memory' or 'gradient-flow', got {name!r}")
