"""Watch the gates: what the keep gate of each trained cell does over a sequence.

A gated cell passes part of its state straight on:
c(t) = k(t) ⊙ c(t−1) + (what is written at t), and k(t), the *keep share*,
is a gate or one minus a gate. It is read off the cell's equations, not
from a list: the coefficient of s(t−1) in the equation of the state s(t),
the other vectors held fixed, is 1 − G_u for the thread's GRUs, G_z for
PyTorch's GRU and G_f for the LSTM; the plain RNN has none (its state only
reaches a(t) through the matrix product and tanh), so it is left out.

Method. Each cell is trained on the adding problem at length T exactly as in
the memory experiment (the same model when ``derive experiment all`` runs
both), then run forward on the fixed test set; the kernel's cache holds
every gate at every step. Measured per model, over the test set:

* the mean keep share, at the two marked steps and at every other step;
* per unit, the mean keep share over the unmarked steps, and how many units
  keep more than :data:`HOLDING` of their value per step ("holding units");
* the share of c at the first marked step that is still carried to c(T) by
  the direct path alone, ∏ k(t) over the steps after it: the largest over
  the units (median over the test sequences);
* the gate of every unit at every step of one test sequence, for the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import sympy

from . import load_kernel, round_sig
from .tasks import test_set
from .train import TrainingConfig, hidden_size, param_count, step_cost, train

HOLDING = 0.95
"""A unit holds its value when it keeps more than this share of it per step
(at 0.95 a value still has 0.95^100 ≈ 0.6 % of itself after 100 steps
by the direct path alone; at 0.99, 37 %)."""

SHOWN_SEQUENCE = 0
"""The test sequence whose gates the figure shows."""

SHOWN_SEED = 0
"""The seed whose trained model the figure shows."""


@dataclass(frozen=True)
class KeepGate:
    """How a cell keeps its state: s(t) = keep ⊙ s(t−1) + …, keep a gate
    (``sign`` +1) or one minus a gate (``sign`` −1)."""

    cell: str
    state: str
    gate: str
    """The gate's vector name, also its key in the kernel's cache."""
    gate_latex: str
    bias: str
    """The bias of the affine node under the gate's σ."""
    sign: int

    def keep(self, gate_values: np.ndarray) -> np.ndarray:
        """The keep share from the gate's values."""
        return gate_values if self.sign > 0 else 1.0 - gate_values


@cache
def keep_gate(cell_name: str) -> KeepGate | None:
    """The keep gate of ``cell_name``, derived from its equations; ``None``
    when no state is carried by a gate alone (the plain RNN)."""
    import derive
    from ..functions import sigmoid
    from ..graph import Affine, Elementwise

    cell = derive.cell(cell_name)
    nodes = {node.target: node for node in cell.nodes}
    for state in cell.states:
        node = nodes.get(state.name)
        if not isinstance(node, Elementwise):
            continue
        coefficient = sympy.expand(sympy.diff(node.expr, sympy.Symbol(state.prev)))
        if coefficient == 0:
            continue
        gates = [s for s in coefficient.free_symbols
                 if isinstance(nodes.get(s.name), Elementwise)
                 and isinstance(nodes[s.name].expr, sigmoid)]
        if len(gates) != 1 or coefficient.free_symbols != {gates[0]}:
            continue
        gate = gates[0]
        sign = sympy.diff(coefficient, gate)
        if coefficient not in (gate, 1 - gate) or sign not in (1, -1):
            continue
        # the gate's pre-activation: an affine node, plus any per-element terms (peepholes)
        pre = nodes[gate.name].expr.args[0]
        affines = [nodes[a.name] for a in sympy.Add.make_args(pre)
                   if a.is_Symbol and isinstance(nodes.get(a.name), Affine)]
        if len(affines) != 1 or affines[0].bias is None:
            continue
        affine = affines[0]
        return KeepGate(cell.name, state.name, gate.name, cell.vectors[gate.name].latex, affine.bias, int(sign))
    return None


def gated_cells(cells: Sequence[str]) -> tuple[str, ...]:
    """The cells of ``cells`` that have a keep gate, in the same order."""
    return tuple(cell for cell in cells if keep_gate(cell) is not None)


@dataclass(frozen=True)
class GatesJob:
    """One trained model whose gates are measured."""

    cell: str
    seed: int
    length: int
    training: TrainingConfig
    trained_params: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    """The parameters the memory experiment has just trained (same cell,
    seed, length and training); trained here when ``None``."""

    @property
    def cost(self) -> float:
        """A rough relative cost, to start the longest runs first."""
        train_cost = self.training.steps if self.trained_params is None else 0
        return self.length * (train_cost + 10) * step_cost(self.cell)

    def label(self) -> str:
        return f"gates {self.cell} seed={self.seed}"


def gates_jobs(
    cells: Sequence[str],
    seeds: Sequence[int],
    length: int,
    training: TrainingConfig,
    trained: Mapping[tuple[str, int], dict[str, np.ndarray]] | None = None,
) -> list[GatesJob]:
    """A job per gated cell and seed, in a fixed order."""
    trained = trained or {}
    return [
        GatesJob(cell, seed, length, training, trained.get((cell, seed)))
        for cell in gated_cells(cells)
        for seed in seeds
    ]


def measure(gate: KeepGate, gate_values: np.ndarray, markers: np.ndarray) -> dict[str, Any]:
    """The keep-share figures of one model.

    ``gate_values``: (T, B, n_h) from the kernel's cache; ``markers``:
    (T, B), 1 at the two marked steps of each sequence.
    """
    keep = gate.keep(gate_values)
    marked = markers > 0
    per_unit = keep[~marked].mean(axis=0)  # (n_h,) over unmarked steps and sequences
    first = marked.argmax(axis=0)  # (B,) the first marked step of each sequence
    steps = np.arange(keep.shape[0])[:, None, None]
    after = np.where(steps > first[None, :, None], keep, 1.0)
    carried = np.exp(np.log(np.maximum(after, 1e-300)).sum(axis=0))  # (B, n_h)
    return {
        "keep_mean": float(keep.mean()),
        "keep_mean_marked": float(keep[marked].mean()),
        "keep_mean_unmarked": float(keep[~marked].mean()),
        "gate_mean": float(gate_values.mean()),
        "keep_per_unit": [float(v) for v in np.sort(per_unit)[::-1]],
        "holding_units": int((per_unit > HOLDING).sum()),
        "carried_best_unit": float(np.median(carried.max(axis=1))),
    }


def run_gates_job(job: GatesJob) -> dict[str, Any]:
    """Measure the gates of one trained model on the test set."""
    gate = keep_gate(job.cell)
    if gate is None:
        raise ValueError(f"cell: {job.cell!r} has no keep gate (a state carried by a gate alone)")
    if job.trained_params is not None:
        params = job.trained_params
    else:
        params = train(job.cell, job.length, job.seed, job.training)[0].params
    xs, _ = test_set(job.length, job.training.test_size)
    _, cache_ = load_kernel(job.cell, job.training.backend).forward(params, xs)
    values = np.asarray(cache_[gate.gate])
    result = {"cell": job.cell, "seed": job.seed, **measure(gate, values, xs[:, :, 1])}
    if job.seed == SHOWN_SEED:
        result["shown"] = values[:, SHOWN_SEQUENCE, :].T  # (n_h, T)
    return result


def shown_sequence(length: int, test_size: int) -> dict[str, Any]:
    """The sequence the figure shows: its marked steps, values and target."""
    xs, targets = test_set(length, test_size)
    marked = [int(t) for t in np.flatnonzero(xs[:, SHOWN_SEQUENCE, 1])]
    return {
        "index_in_test_set": SHOWN_SEQUENCE,
        "marked_steps": [t + 1 for t in marked],  # steps counted from 1, like t in the equations
        "marked_values": [round_sig(float(xs[t, SHOWN_SEQUENCE, 0]), 4) for t in marked],
        "target": round_sig(float(targets[SHOWN_SEQUENCE]), 4),
    }


def aggregate(
    runs: Sequence[dict[str, Any]],
    cells: Sequence[str],
    seeds: Sequence[int],
    length: int,
    training: TrainingConfig,
) -> dict[str, Any]:
    """The experiment's data: per cell, the gate, each seed's figures and
    their summary, and the traces of the shown sequence."""
    by_key = {(r["cell"], r["seed"]): r for r in runs}
    per_cell: dict[str, Any] = {}
    for cell in gated_cells(cells):
        gate = keep_gate(cell)
        assert gate is not None
        n_h = hidden_size(cell, training.param_target)
        seed_runs = [by_key[(cell, seed)] for seed in seeds]
        entry: dict[str, Any] = {
            "n_h": n_h,
            "params": param_count(cell, n_h),
            "state": gate.state,
            "gate": gate.gate,
            "gate_latex": gate.gate_latex,
            "keep": gate.gate if gate.sign > 0 else f"1 - {gate.gate}",
        }
        for key in ("keep_mean", "keep_mean_marked", "keep_mean_unmarked", "gate_mean", "carried_best_unit"):
            entry[key] = [round_sig(r[key], 4) for r in seed_runs]
        entry["holding_units"] = [r["holding_units"] for r in seed_runs]
        entry["keep_per_unit"] = [[round_sig(v, 3) for v in r["keep_per_unit"]] for r in seed_runs]
        shown = by_key.get((cell, SHOWN_SEED), {}).get("shown")
        if shown is not None:
            entry["shown_gate"] = [[round_sig(float(v), 3) for v in unit] for unit in shown]
        per_cell[cell] = entry
    return {
        "quantity": "keep share k(t): the coefficient of s(t-1) in the equation of s(t), "
        "read off the cell (1 - Gu, Gz or Gf); measured on the test set of the adding problem",
        "sequence_length": length,
        "trained_on": f"adding problem at T = {length}, same training as the memory experiment",
        "holding_threshold": HOLDING,
        "training": training.to_json(),
        "shown_seed": SHOWN_SEED,
        "shown_sequence": shown_sequence(length, training.test_size),
        "cells": per_cell,
    }

