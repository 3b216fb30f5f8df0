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
        "vs": "relative to {baseline}",
        "caption": "‖∂L/∂s(T−{k})‖ / ‖∂L/∂s(T)‖ at lag k = {k} over sequences of length {T}: "
        "geometric mean over the seeds and sequences; after training on the adding problem at T = {T}.",
    },
    "fr": {
        "cell": "cellule",
        "init": "à l’initialisation",
        "trained": "après entraînement",
        "vs": "rapport à {baseline}",
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
    baseline = next(iter(summary["init"]))  # the ratios are relative to the run's first cell
    vs = words["vs"].format(baseline=baseline)
    rows = [
        f"| {words['cell']} | {words['init']} | {vs} | {words['trained']} | {vs} |",
        "|:--|--:|--:|--:|--:|",
    ]
    for cell, init in summary["init"].items():
        trained = summary["trained"][cell]
        rel_init = summary[f"init_relative_to_{baseline}"].get(cell)
        rel_trained = summary[f"trained_relative_to_{baseline}"].get(cell)
        rel = [_number(r, lang) if r is not None else "1" for r in (rel_init, rel_trained)]
        rows.append(f"| `{cell}` | {_number(init, lang)} | {rel[0]} | {_number(trained, lang)} | {rel[1]} |")
    caption = words["caption"].format(k=summary["lag"], T=data["sequence_length"])
    return "\n".join(rows) + "\n\n" + caption + "\n"


_GATES_WORDS = {
    "en": {
        "header": "| cell | keep share | kept per step, unmarked steps | at the marked steps "
        "| units keeping > {holding} per step | carried from the 1st marked step to T, best unit |",
        "caption": "After training on the adding problem at T = {T}, on the {n} test sequences; "
        "the keep share is the coefficient of c(t−1) in the cell's equation of c(t). "
        "Mean over {s} seeds, each seed in brackets; the units column gives each seed's count "
        "out of n_h; the last column is the median over the test sequences of "
        "∏ k(t) over the steps after the first marked one, for the unit that keeps most.",
    },
    "fr": {
        "header": "| cellule | part gardée | gardé par pas, pas non marqués | aux pas marqués "
        "| unités gardant > {holding} par pas | transmis du 1er pas marqué à T, meilleure unité |",
        "caption": "Après entraînement sur le problème de l’addition à T = {T}, sur les {n} séquences "
        "de test\u202f; la part gardée est le coefficient de c(t−1) dans l’équation de c(t) de la "
        "cellule. Moyenne sur {s} graines, chaque graine entre crochets\u202f; la colonne des unités "
        "donne le compte de chaque graine sur n_h\u202f; la dernière colonne est la médiane sur les "
        "séquences de test de ∏ k(t) sur les pas qui suivent le premier pas marqué, pour l’unité "
        "qui garde le plus.",
    },
}

_BIAS_WORDS = {
    "en": {
        "header": "| bias added to {bias} | seeds learnt | test error per seed | kept per step at init "
        "| kept per step after training | learnt from step |",
        "caption": "{cell} on the adding problem at T = {T}, {steps} training steps, {s} seeds; "
        "learnt: test error below a tenth of the baseline's ({baseline}); kept per step: mean "
        "of {keep} over the unmarked steps of the test set; learnt from step: where the running "
        "training loss (over 20 steps) goes below that bound for good, per seed (— : never).",
    },
    "fr": {
        "header": "| biais ajouté à {bias} | graines qui apprennent | erreur de test par graine "
        "| gardé par pas à l’initialisation | gardé par pas après entraînement | appris à partir du pas |",
        "caption": "{cell} sur le problème de l’addition à T = {T}, {steps} pas d’entraînement, "
        "{s} graines\u202f; appris\u202f: erreur de test sous le dixième de celle de la référence "
        "({baseline})\u202f; gardé par pas\u202f: moyenne de {keep} sur les pas non marqués du jeu "
        "de test\u202f; appris à partir du pas\u202f: là où la perte d’entraînement moyennée sur "
        "20 pas passe pour de bon sous ce seuil, par graine (—\u202f: jamais).",
    },
}


def _seed_list(values: list[float], lang: str, digits: str = ".2g") -> str:
    if lang == "fr":
        return "\u202f; ".join(f"{v:{digits}}".replace(".", ",") for v in values)
    return ", ".join(f"{v:{digits}}" for v in values)


def _mean_and_seeds(values: list[float], lang: str) -> str:
    mean = sum(values) / len(values)
    return f"{_seed_list([mean], lang, '.2f')} [{_seed_list(values, lang, '.2f')}]"


def _keep_latex(entry: dict[str, Any]) -> str:
    """The keep share as inline math: the gate, or one minus the gate."""
    gate = entry["gate_latex"]
    return f"${gate}$" if entry["keep"] == entry["gate"] else f"$1 - {gate}$"


def gates_table(data: dict[str, Any], seeds: int, lang: str) -> str:
    """Per gated cell: the keep share, unmarked and marked, the holding
    units and what the best unit carries over the sequence."""
    words = _GATES_WORDS[lang]
    holding = _number(data["holding_threshold"], lang)
    rows = [words["header"].format(holding=holding), "|:--|:--|--:|--:|--:|--:|"]
    for cell, entry in data["cells"].items():
        keep = _keep_latex(entry)
        units = ", ".join(f"{n}/{entry['n_h']}" for n in entry["holding_units"])
        if lang == "fr":
            units = units.replace(", ", " ; ").replace(" ;", "\u202f;")
        carried = _seed_list(entry["carried_best_unit"], lang)
        rows.append(
            f"| `{cell}` | {keep} | {_mean_and_seeds(entry['keep_mean_unmarked'], lang)} "
            f"| {_mean_and_seeds(entry['keep_mean_marked'], lang)} | {units} | {carried} |"
        )
    caption = words["caption"].format(T=data["sequence_length"], n=data["training"]["test_size"], s=seeds)
    return "\n".join(rows) + "\n\n" + caption + "\n"


def forget_bias_table(data: dict[str, Any], seeds: int, lang: str) -> str:
    """Per cell and bias: seeds learnt, test errors, keep share before and
    after training, and when each seed learnt."""
    words = _BIAS_WORDS[lang]
    out = []
    for cell, entry in data["cells"].items():
        bias = "$" + entry["bias"].replace("_", "_{", 1) + "}$"
        rows = [words["header"].format(bias=bias), "|--:|--:|:--|--:|--:|:--|"]
        for value in data["biases"]:
            runs = entry["biases"][f"{value:g}"]
            steps = ", ".join("—" if s is None else str(s) for s in runs["learnt_at_step"])
            if lang == "fr":
                steps = steps.replace(", ", "\u202f; ")
            rows.append(
                f"| {_number(value, lang)} | {runs['seeds_learnt']}/{seeds} "
                f"| {_seed_list(runs['test_mse'], lang)} | {_mean_and_seeds(runs['keep_init'], lang).split(' [')[0]} "
                f"| {_mean_and_seeds(runs['keep_trained'], lang).split(' [')[0]} | {steps} |"
            )
        keep = _keep_latex(entry)
        caption = words["caption"].format(
            cell=f"`{cell}`", T=data["sequence_length"], steps=data["training"]["steps"], s=seeds,
            baseline=_number(data["baseline_mse"] * data["learnt_below_fraction_of_baseline"], lang),
            keep=keep,
        )
        out.append("\n".join(rows) + "\n\n" + caption + "\n")
    return "\n".join(out)


def markdown(name: str, result: dict[str, Any], lang: str) -> str:
    """The table of experiment ``name`` ("memory", "gradient-flow", "gates"
    or "forget-bias") from its result file's content, in ``lang``."""
    if lang not in _GRADIENT_WORDS:
        raise ValueError(f"lang: expected one of {', '.join(_GRADIENT_WORDS)}, got {lang!r}")
    if name == "memory":
        return markdown_table(result["data"], result["seeds"], lang)
    if name == "gradient-flow":
        return gradient_table(result["data"], lang)
    if name == "gates":
        return gates_table(result["data"], len(result["seeds"]), lang)
    if name == "forget-bias":
        return forget_bias_table(result["data"], len(result["seeds"]), lang)
    raise ValueError(f"name: expected 'memory', 'gradient-flow', 'gates' or 'forget-bias', got {name!r}")
