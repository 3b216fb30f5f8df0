"""The adding problem (Hochreiter & Schmidhuber 1997), as batches of NumPy arrays.

Each sequence has two input channels: a value drawn uniformly from [0, 1]
and a marker that is 1 at exactly two steps and 0 elsewhere, one marked step
in the first half of the sequence and one in the second half (the variant of
Le et al. 2015 and Arjovsky et al. 2016). The target, read after the last
step, is the sum of the two marked values. A model that ignores its input
can do no better than predicting the mean, 1, whose mean squared error is
the variance of a sum of two independent uniforms: 2 × 1/12 = 1/6.
"""

from __future__ import annotations

import numpy as np

N_INPUTS = 2
"""Input channels: the value and the marker."""

BASELINE_PREDICTION = 1.0
"""The trivial model's constant prediction: the mean of the target."""

BASELINE_MSE = 1.0 / 6.0
"""The expected mean squared error of the trivial model."""

TEST_STREAM = 20240601
"""Seed of the test sets: fixed, shared by every cell and training seed."""


def adding_problem(
    rng: np.random.Generator, length: int, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` sequences of the adding problem of ``length`` steps.

    Returns ``(xs, targets)``: ``xs`` of shape (length, batch, 2), time-major
    like the kernels, and ``targets`` of shape (batch,).
    """
    if length < 2:
        raise ValueError(f"length: expected at least 2 steps (two markers), got {length}")
    if batch < 1:
        raise ValueError(f"batch: expected at least 1 sequence, got {batch}")
    # rng.random is rng.uniform(0.0, 1.0) without the affine map (0 + 1·u = u
    # exactly): the same numbers from the same stream, for fewer NumPy calls
    values = rng.random((length, batch))
    half = length // 2
    first = rng.integers(0, half, size=batch)
    second = rng.integers(half, length, size=batch)
    xs = np.zeros((length, batch, N_INPUTS))
    xs[:, :, 0] = values
    columns = np.arange(batch)
    xs[first, columns, 1] = 1.0
    xs[second, columns, 1] = 1.0
    targets = values[first, columns] + values[second, columns]
    return xs, targets


def test_set(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed test set of ``size`` sequences at ``length`` steps."""
    return adding_problem(np.random.default_rng([TEST_STREAM, length]), length, size)


def baseline_mse(targets: np.ndarray) -> float:
    """The mean squared error of the trivial model on ``targets``."""
    return float(np.mean((targets - BASELINE_PREDICTION) ** 2))
