"""Every gradient of every kernel against central finite differences (float64).

The loss is L = Σ ys ⊙ dys (+ Σ_s final_s ⊙ dstate_s) with random dys and
dstate; its gradient with respect to any input u is what ``backward``
returns for u. For each array, up to ``ENTRIES`` entries (a fixed random
subset) are perturbed by ±EPS and (L(u + EPS) − L(u − EPS)) / 2 EPS is
compared with the kernel's gradient there.
"""

from __future__ import annotations

import numpy as np
import pytest

import derive
from derive import kernels

EPS = 1e-6
TOL = 1e-6
ENTRIES = 20
CASES = [  # seed, T, B, n_x, n_h
    (0, 1, 1, 3, 4),
    (1, 4, 3, 5, 2),
    (2, 30, 2, 2, 3),
]


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a − b| / max(|a| + |b|), the scale-free error CS231n reports."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a) + np.abs(b))), 1e-300))


def _problem(cell_name: str, seed: int, T: int, B: int, n_x: int, n_h: int, with_dstate: bool):
    """Params, xs, state0, dys, dstate drawn with a fixed seed; the params
    are drawn here (not by init_params) so that biases are not small."""
    cell = derive.cell(cell_name)
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(scale=0.6, size=cell.param_shape(k, n_x, n_h)) for k in cell.params}
    states = [s.name for s in cell.states]
    xs = rng.normal(size=(T, B, n_x))
    state0 = {s: rng.normal(scale=0.5, size=(B, n_h)) for s in states}
    dys = rng.normal(size=(T, B, n_h))
    dstate = {s: rng.normal(size=(B, n_h)) for s in states} if with_dstate else None
    return params, xs, state0, dys, dstate


@pytest.mark.parametrize("with_dstate", [False, True], ids=["no-dstate", "dstate"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "seed{}-T{}-B{}-nx{}-nh{}".format(*c))
@pytest.mark.parametrize("cell_name", derive.NAMES)
def test_gradients_match_finite_differences(backend: str, cell_name: str, case: tuple[int, ...], with_dstate: bool) -> None:
    params, xs, state0, dys, dstate = _problem(cell_name, *case, with_dstate)
    kernel = kernels.load(cell_name, backend)

    def loss(params: dict, xs: np.ndarray, state0: dict) -> float:
        ys, cache = kernel.forward(params, xs, state0)
        total = float(np.sum(ys * dys))
        if dstate is not None:
            total += sum(float(np.sum(cache["final"][s] * dstate[s])) for s in dstate)
        return total

    _, cache = kernel.forward(params, xs, state0)
    grads = kernel.backward(cache, dys, dstate)
    # each array a gradient is taken for, and how to rebuild the inputs with it replaced
    wrt = {k: (v, lambda u, k=k: ({**params, k: u}, xs, state0)) for k, v in params.items()}
    wrt["xs"] = (xs, lambda u: (params, u, state0))
    for s, v in state0.items():
        wrt[f"{s}0"] = (v, lambda u, s=s: (params, xs, {**state0, s: u}))
    assert set(grads) == set(wrt), f"{cell_name}: gradients {sorted(grads)}, expected {sorted(wrt)}"

    pick = np.random.default_rng(case[0])
    for key, (value, rebuild) in wrt.items():
        assert grads[key].shape == value.shape, f"{cell_name} d{key}: shape {grads[key].shape}, expected {value.shape}"
        flat = pick.choice(value.size, size=min(ENTRIES, value.size), replace=False)
        numeric, analytic = [], []
        for i in flat:
            index = np.unravel_index(i, value.shape)
            up, down = value.copy(), value.copy()
            up[index] += EPS
            down[index] -= EPS
            numeric.append((loss(*rebuild(up)) - loss(*rebuild(down))) / (2 * EPS))
            analytic.append(grads[key][index])
        err = rel_error(np.array(analytic), np.array(numeric))
        assert err < TOL, f"{cell_name} d{key}: relative error {err:.3e} ≥ tolerance {TOL:.0e} over {len(flat)} entries"
