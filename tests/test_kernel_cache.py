"""What ``backward`` reads is what ``forward`` computed with.

The cache must not alias what the caller can change: updating ``xs`` or a
parameter in place, or rebinding ``params[k]``, between ``forward`` and
``backward`` leaves the gradients those of the forward pass. A cache from
another cell is refused by name; a second ``backward`` on one cache gives
the same result; ``ys`` is read-only.
"""

from __future__ import annotations

import numpy as np
import pytest

import derive
from derive import kernels

N_X, N_H, T, B = 3, 4, 5, 2


@pytest.fixture(params=derive.NAMES)
def cell_name(request: pytest.FixtureRequest) -> str:
    return request.param


def _run(cell_name: str, backend: str):
    kernel = kernels.load(cell_name, backend)
    params = kernel.init_params(N_X, N_H, seed=1)
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(T, B, N_X))
    dys = rng.normal(size=(T, B, N_H))
    ys, cache = kernel.forward(params, xs)
    return kernel, params, xs, dys, ys, cache


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    assert set(got) == set(want)
    for k in want:
        err = float(np.max(np.abs(got[k] - want[k])))
        assert err == 0.0, f"after {what}: gradient {k} moved by {err:.3g}"


def _reference(kernel, params, xs, dys):  # noqa: ANN001
    _, cache = kernel.forward({k: v.copy() for k, v in params.items()}, xs.copy())
    return kernel.backward(cache, dys)


def test_xs_changed_in_place_after_forward(backend: str, cell_name: str) -> None:
    kernel, params, xs, dys, _, cache = _run(cell_name, backend)
    want = _reference(kernel, params, xs, dys)
    xs += 1.0
    _assert_same(kernel.backward(cache, dys), want, "xs += 1")


def test_param_changed_in_place_after_forward(backend: str, cell_name: str) -> None:
    kernel, params, xs, dys, _, cache = _run(cell_name, backend)
    want = _reference(kernel, params, xs, dys)
    for v in params.values():
        v *= -2.0  # an optimiser step, in place
    _assert_same(kernel.backward(cache, dys), want, "params updated in place")


@pytest.mark.parametrize("order", ["F", "C"])
def test_param_of_any_layout_changed_in_place_after_forward(backend: str, cell_name: str, order: str) -> None:
    """Parameters in Fortran order, whose column blocks transposed are
    C-contiguous views of the caller's arrays: still copied, not aliased."""
    kernel, params, xs, dys, _, _ = _run(cell_name, backend)
    params = {k: np.asarray(v, order=order) for k, v in params.items()}
    want = _reference(kernel, params, xs, dys)
    _, cache = kernel.forward(params, xs)
    for v in params.values():
        v *= -2.0
    _assert_same(kernel.backward(cache, dys), want, f"{order}-ordered params updated in place")


def test_param_rebound_after_forward(backend: str, cell_name: str) -> None:
    kernel, params, xs, dys, _, cache = _run(cell_name, backend)
    want = _reference(kernel, params, xs, dys)
    for k in list(params):
        params[k] = np.zeros_like(params[k])
    _assert_same(kernel.backward(cache, dys), want, "params[k] rebound")


def test_second_backward_gives_the_same_gradients(backend: str, cell_name: str) -> None:
    kernel, _, _, dys, _, cache = _run(cell_name, backend)
    first = kernel.backward(cache, dys)
    _assert_same(kernel.backward(cache, dys), first, "a first backward")


def test_ys_is_read_only(backend: str, cell_name: str) -> None:
    _, _, _, _, ys, _ = _run(cell_name, backend)
    with pytest.raises(ValueError, match="read-only"):
        ys[0, 0, 0] = 1.0


def test_cache_of_another_cell_is_named(backend: str, cell_name: str) -> None:
    other = next(n for n in derive.NAMES if n != cell_name)
    _, _, _, dys, _, cache = _run(other, backend)
    with pytest.raises(ValueError, match=rf"cache: expected the cache of {cell_name}\.forward\(\), got one from {other}\.forward\(\)"):
        kernels.load(cell_name, backend).backward(cache, dys)
