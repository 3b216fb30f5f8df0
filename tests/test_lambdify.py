"""``Cell.lambdify()``: a second code path from the same equations, step by
step against the committed kernels."""

from __future__ import annotations

import numpy as np
import pytest

import derive
from derive import kernels


@pytest.mark.parametrize("name", derive.NAMES)
def test_lambdified_steps_match_the_kernels(name: str) -> None:
    cell, kernel = derive.cell(name), kernels.load(name)
    step = cell.lambdify()
    rng = np.random.default_rng(7)
    T, B, n_x, n_h = 6, 3, 4, 5
    params = kernel.init_params(n_x, n_h, seed=3)
    xs = rng.standard_normal((T, B, n_x))
    state0 = {s: rng.standard_normal((B, n_h)) for s in kernel.STATES}
    dys = rng.standard_normal((T, B, n_h))
    dstate = {s: rng.standard_normal((B, n_h)) for s in kernel.STATES}

    ys, cache = kernel.forward(params, xs, state0)
    grads = kernel.backward(cache, dys, dstate)

    # forward, step by step
    state, steps = dict(state0), []
    for t in range(T):
        values = step.forward(params, xs[t], state)
        np.testing.assert_allclose(values[cell.output], ys[t], rtol=1e-12, atol=1e-14, err_msg=f"{name} y({t})")
        state = {s: values[s] for s in kernel.STATES}
        steps.append(values)
    # backward through time, accumulating the per-step VJPs
    total = {k: np.zeros_like(v) for k, v in params.items()}
    d_next = dict(dstate)
    d_xs = np.empty_like(xs)
    for t in reversed(range(T)):
        g = step.vjp(params, steps[t], dys[t], d_next)
        for k in params:
            total[k] += g[k]
        d_xs[t] = g["x"]
        d_next = {s: g[s] for s in kernel.STATES}
    for k in params:
        np.testing.assert_allclose(total[k], grads[k], rtol=1e-10, atol=1e-12, err_msg=f"{name} d{k}")
    np.testing.assert_allclose(d_xs, grads["xs"], rtol=1e-10, atol=1e-12)
    for s in kernel.STATES:
        np.testing.assert_allclose(d_next[s], grads[f"{s}0"], rtol=1e-10, atol=1e-12)
