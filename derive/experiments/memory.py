"""The memory experiment: the adding problem at growing lengths, per cell.

Every cell is trained (:func:`.train.train`) at every length and seed, then
tested on a fixed test set; the test error is set against the trivial model
that predicts 1 whatever the input (:data:`.tasks.BASELINE_MSE` ≈ 0.167). A
run counts as *learnt* when its test error is below a tenth of the
baseline's, i.e. when it explains more than 90 % of the target's variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import round_sig
from .tasks import BASELINE_MSE, BASELINE_PREDICTION, baseline_mse, test_set
from .train import TrainingConfig, hidden_size, mse, param_count, step_cost, train

LEARNT_FRACTION = 0.1
"""A run is learnt when its test error is below this fraction of the baseline's."""


@dataclass(frozen=True)
class MemoryJob:
    """One training run: a cell at a length with a seed."""

    cell: str
    length: int
    seed: int
    training: TrainingConfig
    keep_params: bool = False
    """Return the trained cell parameters and the training losses too (for
    :mod:`.gradient_flow`, :mod:`.gates` and :mod:`.forget_bias`, which
    measure this very model instead of training it again)."""

    @property
    def cost(self) -> float:
        """A rough relative cost, to start the longest runs first."""
        return self.length * step_cost(self.cell)

    def label(self) -> str:
        return f"{self.cell} T={self.length} seed={self.seed}"


def run_memory_job(job: MemoryJob) -> dict[str, Any]:
    """Train one model and measure its test error."""
    model, losses = train(job.cell, job.length, job.seed, job.training)
    xs, targets = test_set(job.length, job.training.test_size)
    tail = max(1, len(losses) // 10)
    result: dict[str, Any] = {
        "cell": job.cell,
        "length": job.length,
        "seed": job.seed,
        "test_mse": mse(model, xs, targets),
        "final_train_loss": float(np.mean(losses[-tail:])),
    }
    if job.keep_params:
        result["params"] = model.params
        result["losses"] = losses
    return result


def memory_jobs(
    cells: Sequence[str], lengths: Sequence[int], seeds: Sequence[int], training: TrainingConfig
) -> list[MemoryJob]:
    """Every run of the experiment, in a fixed order; the runs at the
    longest length keep their trained parameters and losses."""
    return [
        MemoryJob(cell, length, seed, training, keep_params=length == max(lengths))
        for cell in cells
        for length in lengths
        for seed in seeds
    ]


def aggregate(
    runs: Sequence[dict[str, Any]],
    cells: Sequence[str],
    lengths: Sequence[int],
    seeds: Sequence[int],
    training: TrainingConfig,
) -> dict[str, Any]:
    """The experiment's data: per-seed test errors, their summaries, a table."""
    by_key = {(r["cell"], r["length"], r["seed"]): r for r in runs}
    baselines = {
        str(length): round_sig(baseline_mse(test_set(length, training.test_size)[1]))
        for length in lengths
    }
    per_cell: dict[str, Any] = {}
    for cell in cells:
        n_h = hidden_size(cell, training.param_target)
        entry: dict[str, Any] = {
            "n_h": n_h,
            "params": param_count(cell, n_h),
            "test_mse": {},
            "final_train_loss": {},
            "test_mse_mean": {},
            "test_mse_min": {},
            "test_mse_max": {},
            "seeds_learnt": {},
        }
        for length in lengths:
            key = str(length)
            errors = [by_key[(cell, length, seed)]["test_mse"] for seed in seeds]
            entry["test_mse"][key] = [round_sig(e) for e in errors]
            entry["final_train_loss"][key] = [
                round_sig(by_key[(cell, length, seed)]["final_train_loss"]) for seed in seeds
            ]
            entry["test_mse_mean"][key] = round_sig(float(np.mean(errors)))
            entry["test_mse_min"][key] = round_sig(min(errors))
            entry["test_mse_max"][key] = round_sig(max(errors))
            entry["seeds_learnt"][key] = sum(
                e < LEARNT_FRACTION * baselines[key] for e in errors
            )
        per_cell[cell] = entry
    longest = str(max(lengths))
    summary = {
        "length": max(lengths),
        "baseline_mse": baselines[longest],
        "cells": {
            cell: {
                "test_mse_mean": per_cell[cell]["test_mse_mean"][longest],
                "relative_to_baseline": round_sig(
                    per_cell[cell]["test_mse_mean"][longest] / baselines[longest]
                ),
                "seeds_learnt": per_cell[cell]["seeds_learnt"][longest],
            }
            for cell in cells
        },
    }
    data: dict[str, Any] = {
        "task": "adding problem: 2 inputs (value ~ U[0,1], marker), one marker in each half, "
        "target = sum of the two marked values, read after the last step",
        "model": "cell kernel + linear readout of the last output y(T); MSE loss",
        "baseline": f"predict {BASELINE_PREDICTION} always; expected MSE 1/6",
        "baseline_mse_expected": round_sig(BASELINE_MSE),
        "learnt_below_fraction_of_baseline": LEARNT_FRACTION,
        "training": training.to_json(),
        "lengths": list(lengths),
        "baseline_mse": baselines,
        "cells": per_cell,
        "summary": summary,
    }
    return data


_TABLE_WORDS = {
    "en": {
        "cell": "cell",
        "n_h": "n_h",
        "params": "parameters",
        "baseline": "trivial baseline (predict 1)",
        "caption": "Test mean squared error at each sequence length T, mean over {n} seeds; "
        "in brackets, the seeds whose error is below a tenth of the baseline's.",
    },
    "fr": {
        "cell": "cellule",
        "n_h": "n_h",
        "params": "paramètres",
        "baseline": "référence triviale (prédire 1)",
        "caption": "Erreur quadratique moyenne de test à chaque longueur de séquence T, "
        "moyenne sur {n} graines\u202f; entre crochets, les graines dont l’erreur est "
        "sous le dixième de celle de la référence.",
    },
}


def _number(value: float, lang: str) -> str:
    text = f"{value:.3g}"
    return text.replace(".", ",") if lang == "fr" else text


def markdown_table(data: dict[str, Any], seeds: Sequence[int], lang: str) -> str:
    """The test errors as a Markdown table in ``lang`` (``en`` or ``fr``)."""
    words = _TABLE_WORDS[lang]
    lengths = data["lengths"]
    header = [words["cell"], words["n_h"], words["params"], *(f"T = {t}" for t in lengths)]
    rows = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":--", "--:", "--:", *("--:" for _ in lengths)]) + "|",
    ]
    for cell, entry in data["cells"].items():
        values = [
            f"{_number(entry['test_mse_mean'][str(t)], lang)} "
            f"[{entry['seeds_learnt'][str(t)]}/{len(seeds)}]"
            for t in lengths
        ]
        rows.append(f"| `{cell}` | {entry['n_h']} | {entry['params']} | " + " | ".join(values) + " |")
    baseline = [_number(data["baseline_mse"][str(t)], lang) for t in lengths]
    rows.append(f"| {words['baseline']} | | | " + " | ".join(baseline) + " |")
    return "\n".join(rows) + "\n\n" + words["caption"].format(n=len(seeds)) + "\n"
