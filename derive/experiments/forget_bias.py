"""The keep-gate bias at initialisation: does it let a cell learn a longer memory?

With PyTorch's initialisation every bias is drawn in (−1/√n_h, 1/√n_h), so an
LSTM's forget gate starts near σ(0) = 0.5: each step keeps about half of
c(t−1), and 0.5^100 ≈ 10^−30 of a value survives 100 steps. Gers et al.
(2000) start the forget gate's bias positive; Jozefowicz et al. (2015) found
a bias of 1 closes most of the gap between the LSTM and the GRU.

This experiment adds ``bias`` to the keep gate's bias at initialisation, on
top of PyTorch's draw, in the direction that keeps more (b_f + bias for the
LSTM, whose keep share is G_f; b_u − bias for a thread GRU, whose keep share
is 1 − G_u: see :func:`.gates.keep_gate`), then trains exactly as the memory
experiment does at one length. With bias 0 it is the memory experiment's
model. Measured per bias and seed: the test error, whether the task is learnt
(below a tenth of the baseline's error), the first training step from which
the running training loss stays below that bound, and the mean keep share
on the unmarked steps of the test set at initialisation and after training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import load_kernel, round_sig
from .gates import keep_gate, measure
from .memory import LEARNT_FRACTION
from .tasks import BASELINE_MSE, baseline_mse, test_set
from .train import Model, TrainingConfig, hidden_size, mse, param_count, step_cost, train

BIASES: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
"""The biases tried by default."""

DEFAULT_CELLS_HELP = "the cells whose memory cell, apart from their output, is kept by a forget gate"
"""What :func:`default_cells` picks, in words (for ``--help``)."""


def default_cells(cells: Sequence[str]) -> tuple[str, ...]:
    """The cells of ``cells`` that the experiment runs by default: those
    whose keep share is a gate itself (a forget gate G_f, not 1 − G_u) on a
    memory cell that is not their output (the LSTMs, Gers et al. 2000), read
    off the equations (:func:`.gates.keep_gate`)."""
    import derive

    chosen = []
    for name in cells:
        gate = keep_gate(name)
        if gate is not None and gate.sign > 0 and gate.state != derive.cell(name).output:
            chosen.append(name)
    return tuple(chosen)


RUNNING = 20
"""Training steps in the running mean that tells when a run has learnt."""


@dataclass(frozen=True)
class ForgetBiasJob:
    """One training run: a cell, a keep-gate bias, a seed, at one length."""

    cell: str
    bias: float
    seed: int
    length: int
    training: TrainingConfig
    trained: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """At bias 0, the memory experiment's run of this very model (same cell,
    seed, length and training) when it has just been made: its trained cell
    parameters (``params``), training losses (``losses``) and test error
    (``test_mse``), measured instead of training the model again."""

    @property
    def cost(self) -> float:
        """A rough relative cost, to start the longest runs first."""
        return self.length * step_cost(self.cell) * (0.01 if self.trained is not None else 1.0)

    def label(self) -> str:
        return f"forget-bias {self.cell} bias={self.bias:g} seed={self.seed}"


def forget_bias_jobs(
    cells: Sequence[str],
    biases: Sequence[float],
    seeds: Sequence[int],
    length: int,
    training: TrainingConfig,
    trained: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
) -> list[ForgetBiasJob]:
    """Every run of the experiment, in a fixed order.

    ``trained`` maps (cell, seed) to the memory experiment's runs at
    ``length`` with ``training`` (see :attr:`ForgetBiasJob.trained`): at
    bias 0 the model is the same, so it is measured instead of trained again.
    """
    for cell in cells:
        if keep_gate(cell) is None:
            raise ValueError(f"cells: {cell!r} has no keep gate whose bias could be moved")
    trained = trained or {}
    return [
        ForgetBiasJob(cell, bias, seed, length, training, trained.get((cell, seed)) if bias == 0 else None)
        for cell in cells
        for bias in biases
        for seed in seeds
    ]


def initial_model(cell: str, n_h: int, seed: int, bias: float, backend: str = "numpy") -> Model:
    """The model at initialisation (run by ``backend``) with ``bias`` added to
    its keep gate's bias, in the direction that keeps more (raises G_f, lowers G_u)."""
    model = Model.initial(cell, n_h, seed, backend)
    gate = keep_gate(cell)
    if gate is None:
        raise ValueError(f"cell: {cell!r} has no keep gate whose bias could be moved")
    model.params[gate.bias] += gate.sign * bias
    return model


def learnt_at(losses: Sequence[float], bound: float, window: int = RUNNING) -> int | None:
    """The first step (counted from 1) from which the running mean of the
    training loss over ``window`` steps stays below ``bound``; None if never."""
    if len(losses) < window:
        return None
    running = np.convolve(np.asarray(losses, dtype=float), np.ones(window) / window, mode="valid")
    above = np.flatnonzero(running >= bound)
    first = 0 if above.size == 0 else int(above[-1]) + 1
    return None if first >= running.size else first + window


def _keep_on_test(model: Model, params: dict[str, np.ndarray], xs: np.ndarray) -> float:
    """The mean keep share on the unmarked steps of ``xs`` of ``model``'s
    cell with the cell parameters ``params``."""
    gate = keep_gate(model.cell)
    assert gate is not None
    _, cache = model.kernel.forward(params, xs)
    return measure(gate, np.asarray(cache[gate.gate]), xs[:, :, 1])["keep_mean_unmarked"]


def run_forget_bias_job(job: ForgetBiasJob) -> dict[str, Any]:
    """Train one model from the shifted initialisation and measure it (or
    measure the memory experiment's model, :attr:`ForgetBiasJob.trained`)."""
    n_h = hidden_size(job.cell, job.training.param_target)
    model = initial_model(job.cell, n_h, job.seed, job.bias, job.training.backend)
    xs, targets = test_set(job.length, job.training.test_size)
    keep_init = _keep_on_test(model, model.params, xs)
    if job.trained is not None:
        if job.bias != 0:
            raise ValueError(f"trained: the memory experiment's model is the one at bias 0, not at {job.bias:g}")
        params, losses, error = job.trained["params"], job.trained["losses"], job.trained["test_mse"]
    else:
        model, losses = train(job.cell, job.length, job.seed, job.training, initial=model)
        params, error = model.params, mse(model, xs, targets)
    return {
        "cell": job.cell,
        "bias": job.bias,
        "seed": job.seed,
        "test_mse": error,
        "learnt_at_step": learnt_at(losses, LEARNT_FRACTION * BASELINE_MSE),
        "keep_init": keep_init,
        "keep_trained": _keep_on_test(model, params, xs),
    }


def aggregate(
    runs: Sequence[dict[str, Any]],
    cells: Sequence[str],
    biases: Sequence[float],
    seeds: Sequence[int],
    length: int,
    training: TrainingConfig,
) -> dict[str, Any]:
    """The experiment's data: per cell and bias, each seed's figures."""
    by_key = {(r["cell"], r["bias"], r["seed"]): r for r in runs}
    baseline = round_sig(baseline_mse(test_set(length, training.test_size)[1]))
    per_cell: dict[str, Any] = {}
    for cell in cells:
        gate = keep_gate(cell)
        assert gate is not None
        n_h = hidden_size(cell, training.param_target)
        entry: dict[str, Any] = {
            "n_h": n_h,
            "params": param_count(cell, n_h),
            "gate": gate.gate,
            "gate_latex": gate.gate_latex,
            "bias": gate.bias,
            "keep": gate.gate if gate.sign > 0 else f"1 - {gate.gate}",
            "biases": {},
        }
        for bias in biases:
            seed_runs = [by_key[(cell, bias, seed)] for seed in seeds]
            errors = [r["test_mse"] for r in seed_runs]
            entry["biases"][f"{bias:g}"] = {
                "test_mse": [round_sig(e) for e in errors],
                "seeds_learnt": sum(e < LEARNT_FRACTION * baseline for e in errors),
                "learnt_at_step": [r["learnt_at_step"] for r in seed_runs],
                "keep_init": [round_sig(r["keep_init"], 4) for r in seed_runs],
                "keep_trained": [round_sig(r["keep_trained"], 4) for r in seed_runs],
            }
        per_cell[cell] = entry
    return {
        "task": "adding problem, as in the memory experiment",
        "sequence_length": length,
        "bias_added": "to the keep gate's bias drawn as PyTorch does, in the direction that keeps more "
        "(b_f + bias when the keep share is Gf; b_u - bias when it is 1 - Gu)",
        "baseline_mse": baseline,
        "learnt_below_fraction_of_baseline": LEARNT_FRACTION,
        "learnt_at_step": f"first step from which the running mean of the training loss over {RUNNING} "
        "steps stays below the bound (null: never)",
        "keep": "mean keep share over the unmarked steps, units and sequences of the test set",
        "training": training.to_json(),
        "biases": [float(b) for b in biases],
        "cells": per_cell,
    }
