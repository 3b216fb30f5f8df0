"""How much gradient reaches the state k steps back: ‖∂L/∂c(t−k)‖ / ‖∂L/∂c(t)‖.

Method. Take a batch of input sequences of length T (the adding problem's
inputs) and a random unit vector g per sequence, and let L = g · c(T), so
that ∂L/∂c(T) = g has norm 1 and the ratio we want is ‖∂L/∂c(T−k)‖ itself.
The generated kernel's ``backward`` returns the gradient reaching the
*initial* state of the sequence it was given. So, for each lag k:

1. run the kernel forward over the whole sequence, in chunks that stop at
   every T − k, which gives the true states at those steps (both a and c
   for the LSTM, whose output carries only a);
2. run the kernel forward over the last k steps only, starting from the
   state at T − k;
3. run its backward with ``dys`` zero everywhere and ``dstate`` = g on the
   measured state at T (zero on the LSTM's other state);
4. the initial-state gradient it returns (``c0``, or ``a0`` for the RNN) is
   exactly ∂L/∂c(T−k): the last k steps are the only path from c(T−k) to
   c(T), and the rest of the sequence only fixed where they start.

Every lag costs k steps forward and backward, so a set of lags spread
between 1 and T costs a few times T instead of the T²/2 of every lag.

The state measured is the memory cell c: for the GRUs c is the only state;
for the LSTM c is the memory cell (the gradient entering at c(T) also
flows back through a); the plain RNN has a only. Each seed gives the
geometric mean of the ratio over the batch; across seeds the plots show the
geometric mean and the range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from . import KERNEL_STATES, STATE_MEASURED, load_kernel, round_sig
from .tasks import adding_problem
from .train import Model, TrainingConfig, hidden_size, param_count, step_cost, train

LAGS: tuple[int, ...] = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200)
"""The lags measured, up to the longest one asked for."""

CONDITIONS: tuple[str, ...] = ("init", "trained")
"""At initialisation, and after training on the adding problem."""

MEASURE_BATCH = 32
"""Sequences per measurement."""

FLOOR = float(np.finfo(np.float64).tiny)
"""Ratios below this (≈ 2.2e-308: underflow, or exact zeros) are floored to it."""


def lags_up_to(max_lag: int) -> list[int]:
    """The lags of :data:`LAGS` up to ``max_lag``, ``max_lag`` included."""
    if max_lag < 1:
        raise ValueError(f"max_lag: expected at least 1, got {max_lag}")
    lags = [k for k in LAGS if k < max_lag]
    return [*lags, max_lag]


def states_at(
    kernel: ModuleType,
    params: dict[str, np.ndarray],
    xs: np.ndarray,
    positions: Sequence[int],
    names: Sequence[str],
) -> dict[int, dict[str, np.ndarray]]:
    """The states after ``p`` steps of ``xs``, for every ``p`` in ``positions``.

    One forward pass over the whole sequence, cut into chunks at the
    positions; the state after 0 steps is the zero initial state.
    """
    batch, n_h = xs.shape[1], next(iter(params.values())).shape[0]
    state = {name: np.zeros((batch, n_h), dtype=xs.dtype) for name in names}
    found: dict[int, dict[str, np.ndarray]] = {}
    done = 0
    for position in sorted(set(positions)):
        if position > done:
            _, cache = kernel.forward(params, xs[done:position], state)
            state = dict(cache["final"])
            done = position
        found[position] = state
    return found


def gradient_ratios(
    kernel: ModuleType,
    params: dict[str, np.ndarray],
    xs: np.ndarray,
    measured: str,
    names: Sequence[str],
    lags: Sequence[int],
    rng: np.random.Generator,
) -> np.ndarray:
    """‖∂L/∂s(T−k)‖ / ‖∂L/∂s(T)‖ for each lag k (rows) and sequence (columns),
    with L = g · s(T) for a random unit vector g per sequence."""
    length, batch = xs.shape[:2]
    if max(lags) > length:
        raise ValueError(f"lags: expected lags up to the length {length}, got {max(lags)}")
    states = states_at(kernel, params, xs, [length - k for k in lags], names)
    n_h = states[length - lags[0]][measured].shape[1]
    direction = rng.normal(size=(batch, n_h))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    ratios = np.empty((len(lags), batch))
    for row, lag in enumerate(lags):
        start = length - lag
        ys, cache = kernel.forward(params, xs[start:], states[start])
        dstate = {name: np.zeros((batch, n_h)) for name in names}
        dstate[measured] = direction
        grads = kernel.backward(cache, np.zeros_like(ys), dstate)
        ratios[row] = np.linalg.norm(grads[f"{measured}0"], axis=1)
    return ratios


@dataclass(frozen=True)
class GradientFlowJob:
    """One measurement: a cell, a seed, at initialisation or after training."""

    cell: str
    seed: int
    condition: str
    max_lag: int
    training: TrainingConfig
    trained_params: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    """The cell parameters after training, when the memory experiment has
    just trained this very model; trained here when ``None``."""

    @property
    def cost(self) -> float:
        """A rough relative cost, to start the longest runs first."""
        must_train = self.condition == "trained" and self.trained_params is None
        train_cost = self.training.steps if must_train else 0
        return self.max_lag * (train_cost + 10) * step_cost(self.cell)

    def label(self) -> str:
        return f"gradient-flow {self.cell} {self.condition} seed={self.seed}"


def gradient_flow_jobs(
    cells: Sequence[str],
    seeds: Sequence[int],
    max_lag: int,
    training: TrainingConfig,
    trained: Mapping[tuple[str, int], dict[str, np.ndarray]] | None = None,
) -> list[GradientFlowJob]:
    """Every measurement of the experiment, in a fixed order.

    ``trained`` maps (cell, seed) to parameters already trained at length
    ``max_lag`` with ``training`` (by the memory experiment), which are then
    measured instead of being trained again: the same model either way.
    """
    trained = trained or {}
    return [
        GradientFlowJob(
            cell, seed, condition, max_lag, training,
            trained.get((cell, seed)) if condition == "trained" else None,
        )
        for cell in cells
        for condition in CONDITIONS
        for seed in seeds
    ]


def run_gradient_flow_job(job: GradientFlowJob) -> dict[str, Any]:
    """Measure the gradient ratios of one model at every lag.

    The trained model is the one :func:`.train.train` gives for the same
    cell and seed at length ``max_lag``: the memory experiment's model at
    its longest length (the readout plays no part: no gradient enters
    through the outputs here).
    """
    if job.condition not in CONDITIONS:
        raise ValueError(f"condition: expected one of {CONDITIONS}, got {job.condition!r}")
    if job.condition == "init":
        n_h = hidden_size(job.cell, job.training.param_target)
        params = Model.initial(job.cell, n_h, job.seed, job.training.backend).params
    elif job.trained_params is not None:
        params = job.trained_params
    else:
        params = train(job.cell, job.max_lag, job.seed, job.training)[0].params
    lags = lags_up_to(job.max_lag)
    xs, _ = adding_problem(np.random.default_rng([job.seed, 3]), job.max_lag, MEASURE_BATCH)
    ratios = gradient_ratios(
        load_kernel(job.cell, job.training.backend),
        params,
        xs,
        STATE_MEASURED[job.cell],
        KERNEL_STATES[job.cell],
        lags,
        np.random.default_rng([job.seed, 4]),
    )
    # Geometric mean over the batch. A saturated tanh can make a gradient
    # exactly zero (1 − a² rounds to 0): such ratios are floored at the
    # smallest normal float64 to keep log10 finite, and counted.
    log_ratios = np.log10(np.maximum(ratios, FLOOR)).mean(axis=1)
    return {
        "cell": job.cell,
        "seed": job.seed,
        "condition": job.condition,
        "lags": lags,
        "log10_ratio": [float(v) for v in log_ratios],
        "floored": [int(n) for n in (ratios < FLOOR).sum(axis=1)],
    }


COMPARED_LAG = 100
"""The lag at which the summary compares the cells (the longest one below
it when the sequences are shorter)."""


def aggregate(
    runs: Sequence[dict[str, Any]],
    cells: Sequence[str],
    seeds: Sequence[int],
    max_lag: int,
    training: TrainingConfig,
) -> dict[str, Any]:
    """The experiment's data: per-seed log-ratios, their geometric mean and
    range over seeds, and the ratios at :data:`COMPARED_LAG` side by side."""
    lags = lags_up_to(max_lag)
    by_key = {(r["cell"], r["condition"], r["seed"]): r for r in runs}
    per_cell: dict[str, Any] = {}
    for cell in cells:
        n_h = hidden_size(cell, training.param_target)
        entry: dict[str, Any] = {
            "n_h": n_h,
            "params": param_count(cell, n_h),
            "state": STATE_MEASURED[cell],
        }
        for condition in CONDITIONS:
            logs = np.array([by_key[(cell, condition, seed)]["log10_ratio"] for seed in seeds])
            floored = np.array([by_key[(cell, condition, seed)]["floored"] for seed in seeds])
            entry[condition] = {
                "log10_ratio_per_seed": [[round_sig(v) for v in row] for row in logs],
                "sequences_floored": [int(n) for n in floored.sum(axis=0)],
                "ratio_geomean": [round_sig(10.0**v) for v in logs.mean(axis=0)],
                "ratio_min": [round_sig(10.0**v) for v in logs.min(axis=0)],
                "ratio_max": [round_sig(10.0**v) for v in logs.max(axis=0)],
            }
        per_cell[cell] = entry
    lag = max(k for k in lags if k <= COMPARED_LAG)
    column = lags.index(lag)
    summary: dict[str, Any] = {"lag": lag}
    for condition in CONDITIONS:
        ratios = {cell: per_cell[cell][condition]["ratio_geomean"][column] for cell in cells}
        summary[condition] = ratios
        # relative to the first cell of the run (in the thread's order, the plain RNN)
        baseline = cells[0]
        summary[f"{condition}_relative_to_{baseline}"] = {
            cell: round_sig(value / ratios[baseline]) for cell, value in ratios.items() if cell != baseline
        }
    return {
        "quantity": "||dL/ds(T-k)|| / ||dL/ds(T)|| with L = g . s(T), g a random unit vector; "
        "s = c (a for rnn; the memory cell c for lstm); geometric mean over a batch "
        f"of {MEASURE_BATCH} adding-problem input sequences",
        "sequence_length": max_lag,
        "trained_on": f"adding problem at T = {max_lag}, same training as the memory experiment",
        "training": training.to_json(),
        "lags": lags,
        "cells": per_cell,
        "summary": summary,
    }
