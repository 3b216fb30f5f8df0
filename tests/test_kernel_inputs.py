"""What the kernels do with bad, float32 and extreme inputs.

Bad input raises a ValueError naming the argument, the expected and the
received; float32 stays float32; pre-activations of ±1e4 and 10,000 steps
give finite values with no numpy warning (the suite runs with warnings as
errors, and nothing here suppresses them).
"""

from __future__ import annotations

import re

import numpy as np
import sympy
import pytest

import derive
from derive import kernels

N_X, N_H, T, B = 7, 5, 4, 3  # distinct sizes, so that a message's numbers say which is meant
BAD_N_X = 11


def _setup(cell_name: str, backend: str, dtype=np.float64):
    kernel = kernels.load(cell_name, backend)
    params = kernel.init_params(N_X, N_H, seed=3, dtype=dtype)
    xs = np.random.default_rng(0).normal(size=(T, B, N_X)).astype(dtype)
    states = [s.name for s in derive.cell(cell_name).states]
    return kernel, params, xs, states


def _raises(call, argument: str, *expected_and_received: str) -> str:
    """Run ``call``; it must raise a ValueError whose message names
    ``argument`` and contains every string of ``expected_and_received``."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert argument in message, f"message does not name {argument!r}: {message}"
    for text in expected_and_received:
        assert re.search(rf"(?<![\w.]){re.escape(text)}(?![\w])", message), f"{text!r} missing from: {message}"
    return message


@pytest.fixture(params=derive.NAMES)
def cell_name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_xs_of_wrong_rank(backend: str, cell_name: str) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    message = _raises(lambda: kernel.forward(params, xs.ravel()), "xs", str(xs.ravel().shape))
    assert re.search(r"\b3\b|T, B", message), f"expected rank or shape missing from: {message}"


def test_xs_of_wrong_size(backend: str, cell_name: str) -> None:
    kernel, params, _, _ = _setup(cell_name, backend)
    bad = np.zeros((T, B, BAD_N_X))
    _raises(lambda: kernel.forward(params, bad), "xs", str(N_X), str(bad.shape))


def test_params_of_another_size(backend: str, cell_name: str) -> None:
    """params made for n_x = 11 do not fit xs of n_x = 7: either may be named."""
    kernel, _, xs, _ = _setup(cell_name, backend)
    params = kernel.init_params(BAD_N_X, N_H)
    with pytest.raises(ValueError, match=rf"(xs|params).*\b{BAD_N_X}\b.*\b{N_X}\b|(xs|params).*\b{N_X}\b.*\b{BAD_N_X}\b"):
        kernel.forward(params, xs)


def test_param_of_wrong_shape(backend: str, cell_name: str) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    key = [k for k, v in params.items() if v.ndim == 1][-1]  # a bias, after the parameter n_h is read from
    params[key] = np.zeros(N_H + 1)
    _raises(lambda: kernel.forward(params, xs), key, f"({N_H},)", f"({N_H + 1},)")


def test_missing_param(backend: str, cell_name: str) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    key = list(params)[-1]
    del params[key]
    _raises(lambda: kernel.forward(params, xs), "params", key)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_xs(backend: str, cell_name: str, bad: float) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    xs[1, 2, 3] = bad
    _raises(lambda: kernel.forward(params, xs), "xs", "finite", "NaN" if np.isnan(bad) else "inf")


def test_non_finite_param(backend: str, cell_name: str) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    key = list(params)[0]
    params[key][(0,) * params[key].ndim] = np.nan  # a matrix, a bias or a per-element parameter
    _raises(lambda: kernel.forward(params, xs), key, "finite", "NaN")


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128])
def test_xs_of_non_float_dtype(backend: str, cell_name: str, dtype: type) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    bad = xs.astype(dtype)
    _raises(lambda: kernel.forward(params, bad), "xs", "float64", np.dtype(dtype).name)


def test_xs_of_another_float_dtype(backend: str, cell_name: str) -> None:
    """float64 params with float32 xs: no silent cast either way."""
    kernel, params, xs, _ = _setup(cell_name, backend)
    _raises(lambda: kernel.forward(params, xs.astype(np.float32)), "xs", "float64", "float32")


def test_state0_of_wrong_shape(backend: str, cell_name: str) -> None:
    kernel, params, xs, states = _setup(cell_name, backend)
    state0 = {s: np.zeros((B, N_H)) for s in states}
    state0[states[-1]] = np.zeros((B, N_H + 2))
    _raises(lambda: kernel.forward(params, xs, state0), "state0", states[-1], f"({B}, {N_H})", f"({B}, {N_H + 2})")


def test_state0_missing_a_state(backend: str, cell_name: str) -> None:
    kernel, params, xs, states = _setup(cell_name, backend)
    _raises(lambda: kernel.forward(params, xs, {"q": np.zeros((B, N_H))}), "state0", states[0], "q")


def test_dys_of_wrong_shape(backend: str, cell_name: str) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    ys, cache = kernel.forward(params, xs)
    bad = np.zeros((T + 1, B, N_H))
    _raises(lambda: kernel.backward(cache, bad), "dys", str(ys.shape), str(bad.shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("t", [0, T - 1], ids=["first step", "last step"])
def test_non_finite_dys(backend: str, cell_name: str, bad: float, t: int) -> None:
    """An inf or a NaN in dys is refused with the message of NumPy's check on
    both backends, and no warning before it (the Numba backward checks dys's
    values after its loop: such a value makes δz or a state's gradient
    non-finite, whatever the step and the element)."""
    kernel, params, xs, _ = _setup(cell_name, backend)
    ys, cache = kernel.forward(params, xs)
    dys = np.random.default_rng(2).normal(size=ys.shape)
    dys[t, B - 1, 2] = bad
    _raises(lambda: kernel.backward(cache, dys), "dys", "finite", "NaN" if np.isnan(bad) else "inf")


def test_dstate_of_wrong_shape(backend: str, cell_name: str) -> None:
    kernel, params, xs, states = _setup(cell_name, backend)
    ys, cache = kernel.forward(params, xs)
    dstate = {s: np.zeros((B + 1, N_H)) for s in states}
    _raises(lambda: kernel.backward(cache, np.zeros_like(ys), dstate), "dstate", f"({B}, {N_H})", f"({B + 1}, {N_H})")


def test_init_params(backend: str, cell_name: str) -> None:
    """The cell's keys and shapes, uniform within ±1/√n_h, seeded, in the dtype asked."""
    kernel = kernels.load(cell_name, backend)
    cell = derive.cell(cell_name)
    params = kernel.init_params(N_X, N_H, seed=5, dtype=np.float32)
    assert list(params) == list(cell.params)
    for k, v in params.items():
        assert v.shape == cell.param_shape(k, N_X, N_H) and v.dtype == np.float32, k
        assert np.abs(v).max() <= 1 / np.sqrt(N_H), k
    again, other = kernel.init_params(N_X, N_H, seed=5, dtype=np.float32), kernel.init_params(N_X, N_H, seed=6, dtype=np.float32)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert not all(np.array_equal(params[k], other[k]) for k in params)


def test_float32_stays_float32(backend: str, cell_name: str) -> None:
    kernel, params, xs, states = _setup(cell_name, backend, np.float32)
    state0 = {s: np.full((B, N_H), 0.1, np.float32) for s in states}
    ys, cache = kernel.forward(params, xs, state0)
    dstate = {s: np.ones((B, N_H), np.float32) for s in states}
    grads = kernel.backward(cache, np.ones_like(ys), dstate)
    assert ys.dtype == np.float32
    assert {s: v.dtype for s, v in cache["final"].items()} == {s: np.dtype(np.float32) for s in states}
    wrong = {k: g.dtype for k, g in grads.items() if g.dtype != np.float32}
    assert not wrong, f"gradients not float32: {wrong}"
    # and float32 computes the same function as float64, to float32 precision
    ys64, _ = kernel.forward({k: v.astype(np.float64) for k, v in params.items()}, xs.astype(np.float64),
                             {s: v.astype(np.float64) for s, v in state0.items()})
    assert np.max(np.abs(ys - ys64)) < 1e-5


def _assert_finite(cell_name: str, ys: np.ndarray, grads: dict[str, np.ndarray]) -> None:
    assert np.isfinite(ys).all(), f"{cell_name}: non-finite ys"
    bad = [k for k, g in grads.items() if not np.isfinite(g).all()]
    assert not bad, f"{cell_name}: non-finite gradients {bad}"


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus", "minus"])
def test_saturated_preactivations(backend: str, cell_name: str, sign: float) -> None:
    """Pre-activations around ±1e4 saturate σ and tanh without a warning."""
    kernel, params, xs, states = _setup(cell_name, backend)
    params = {k: sign * np.full_like(v, 1e3) for k, v in params.items()}
    xs = np.abs(xs) + 1.0  # pre-activations of thousands to tens of thousands, of either sign
    ys, cache = kernel.forward(params, xs, {s: np.ones((B, N_H)) for s in states})
    if sign < 0 and _divides(derive.cell(cell_name)):
        # a known limit, stated on the site: minLSTM's G_f / (G_f + G_i) as the paper writes it has a
        # derivative in (G_f + G_i)^-2, which overflows once both gates are below about 1e-154
        assert np.all(np.isfinite(ys))
        # compiled code raises no floating-point warning: the Numba kernel checks δz and the carried
        # gradients after its loop and warns as NumPy does
        with pytest.raises(RuntimeWarning, match="overflow"):
            kernel.backward(cache, np.ones_like(ys), {s: np.ones((B, N_H)) for s in states})
        return
    grads = kernel.backward(cache, np.ones_like(ys), {s: np.ones((B, N_H)) for s in states})
    _assert_finite(cell_name, ys, grads)
    if _saturating(derive.cell(cell_name)):  # a mix of σ and tanh outputs and of a state in [−1, 1]
        assert np.all(np.abs(ys) <= 1.0 + 1e-12)


def _divides(cell: derive.Cell) -> bool:
    """Whether an equation of ``cell`` divides by a vector."""
    from derive.graph import Elementwise

    return any(isinstance(n, Elementwise) and any(p.exp.is_negative for p in n.expr.atoms(sympy.Pow)) for n in cell.nodes)


def _saturating(cell: derive.Cell) -> bool:
    """Whether every affine node of ``cell`` is read only under σ or tanh, so
    that its output stays in [−1, 1] (false for minGRU's linear candidate,
    IndRNN's ReLU)."""
    from derive.functions import sigmoid
    from derive.graph import Affine, Elementwise

    bounded = (sigmoid, sympy.tanh)
    for node in cell.nodes:
        if not isinstance(node, Affine):
            continue
        z = sympy.Symbol(node.target)
        for reader in cell.nodes:
            if isinstance(reader, Elementwise) and z in reader.expr.free_symbols:
                if not isinstance(reader.expr, bounded):
                    return False
            elif isinstance(reader, Affine) and node.target in reader.parts:
                return False
    return True


def test_ten_thousand_steps(backend: str, cell_name: str) -> None:
    kernel = kernels.load(cell_name, backend)
    params = kernel.init_params(2, 3, seed=1)
    xs = np.random.default_rng(1).normal(size=(10_000, 2, 2))
    ys, cache = kernel.forward(params, xs)
    grads = kernel.backward(cache, np.ones_like(ys))
    _assert_finite(cell_name, ys, grads)
    assert ys.shape == (10_000, 2, 3) and grads["xs"].shape == xs.shape


def test_runtime_sigmoid_is_stable_and_keeps_dtype() -> None:
    from derive.runtime import sigmoid

    z = np.linspace(-30.0, 30.0, 61)
    # ½(1 + tanh(z/2)) cancels for z ≪ 0: accurate to 1e-16 absolutely, not relatively
    np.testing.assert_allclose(sigmoid(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-14, atol=1e-16)
    for dtype in (np.float32, np.float64):  # 0 or a subnormal below -88 (float32) / -709 (float64)
        extreme = sigmoid(np.array([-1e4, 1e4], dtype))
        assert extreme.dtype == dtype and 0 <= extreme[0] < np.finfo(dtype).tiny and extreme[1] == 1.0


@pytest.mark.parametrize("dim", ["T", "B"])
def test_empty_sequence_or_batch_says_the_minimum(backend: str, cell_name: str, dim: str) -> None:
    kernel, params, xs, _ = _setup(cell_name, backend)
    empty = xs[:0] if dim == "T" else xs[:, :0]
    _raises(lambda: kernel.forward(params, empty), "xs", f"{dim} ≥ 1", str(empty.shape))


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_init_params_refuses_a_bad_seed(backend: str, cell_name: str, seed: object) -> None:
    kernel = kernels.load(cell_name, backend)
    _raises(lambda: kernel.init_params(N_X, N_H, seed=seed), "seed", "non-negative integer", repr(seed))


def test_params_as_nested_lists(backend: str, cell_name: str) -> None:
    """Lists of floats are arrays like any other: the same result, no TypeError from inside the kernel."""
    kernel, params, xs, _ = _setup(cell_name, backend)
    ys, _ = kernel.forward(params, xs)
    ys_lists, _ = kernel.forward({k: v.tolist() for k, v in params.items()}, xs.tolist())
    np.testing.assert_array_equal(ys_lists, ys)


def test_runtime_sigmoid_is_accurate_in_both_tails_in_float32() -> None:
    """½(1 + tanh(z/2)) alone gives σ(−18) = 3e−8 (true 1.5e−8) and 0 below −17 in float32."""
    from derive.runtime import sigmoid

    z32 = np.linspace(-85.0, 30.0, 2301).astype(np.float32)
    z = z32.astype(np.float64)  # σ of the float32 inputs themselves
    exact = 1.0 / (1.0 + np.exp(-z))
    got = sigmoid(z32).astype(np.float64)
    rel = np.abs(got - exact) / exact
    worst = int(np.argmax(rel))
    assert rel[worst] < 1e-6, f"σ({z[worst]:g}) in float32 = {got[worst]:.3g}, exact {exact[worst]:.3g}"
    z64 = np.linspace(-700.0, 30.0, 7301)  # float64 lost the tail below about −37
    rel64 = np.abs(sigmoid(z64) - 1.0 / (1.0 + np.exp(-z64))) * (1.0 + np.exp(-z64))
    assert rel64.max() < 1e-13, f"σ({z64[np.argmax(rel64)]:g}) in float64: relative error {rel64.max():.2e}"


def _sigma_biases(cell: derive.Cell) -> list[str]:
    gates = {s.name for n in cell.nodes if isinstance(getattr(n, "expr", None), derive.functions.sigmoid)
             for s in n.expr.args[0].free_symbols}  # the affine node under σ (a peephole's term aside)
    return [n.bias for n in cell.nodes if getattr(n, "target", None) in gates and getattr(n, "bias", None)]


def test_float32_gradients_of_nearly_shut_gates(backend: str, cell_name: str) -> None:
    """Every σ bias at −20 (gates nearly shut): float32 gradients within 1e−4 of
    float64, relative to each gradient's scale (σ's tail used to make them
    wrong by factors of 8 to 600)."""
    kernel, params, xs, _ = _setup(cell_name, backend)
    biases = _sigma_biases(derive.cell(cell_name))
    if not biases:
        pytest.skip(f"{cell_name} has no σ")
    for b in biases:
        params[b] = params[b] - 20.0
    dys = np.random.default_rng(1).normal(size=(T, B, N_H))
    ys64, cache64 = kernel.forward(params, xs)
    g64 = kernel.backward(cache64, dys)
    ys32, cache32 = kernel.forward({k: v.astype(np.float32) for k, v in params.items()}, xs.astype(np.float32))
    g32 = kernel.backward(cache32, dys.astype(np.float32))
    for k in g64:
        err = float(np.max(np.abs(g32[k] - g64[k]))) / float(np.max(np.abs(g64[k])))
        assert err < 1e-4, f"{cell_name} d{k}: float32 off by {err:.2e} of its scale"
