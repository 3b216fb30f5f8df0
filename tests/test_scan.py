"""The Jacobian classification (derive.structure) and the parallel-scan
kernels of the linear-scan cells (derive.scan, derive.kernels.scan)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import derive
from derive import kernels, proof
from derive.kernels import scan
from derive.render.scan_kernel import NotAScanCell
from derive.scan import linear_scan, linear_scan_into, reverse_linear_scan
from derive.structure import classify

SCAN_CELLS = [n for n in derive.NAMES if scan.has_scan(n)]


def loop_states(a: np.ndarray, b: np.ndarray, s0: np.ndarray) -> np.ndarray:
    out = [s0]
    for t in range(len(a)):
        out.append(a[t] * out[-1] + b[t])
    return np.array(out)


@pytest.mark.parametrize("T", [1, 2, 7, 16, 65])
@pytest.mark.parametrize("block", [None, 1, 3, 100])
def test_linear_scan_is_the_recurrence(T: int, block: int | None) -> None:
    rng = np.random.default_rng(T)
    a, b = rng.uniform(-1.5, 1.5, (T, 3, 4)), rng.standard_normal((T, 3, 4))  # any sign, |a| > 1 too
    s0, d, g_last = rng.standard_normal((3, 4)), rng.standard_normal((T, 3, 4)), rng.standard_normal((3, 4))
    assert np.max(np.abs(linear_scan(a, b, s0, block) - loop_states(a, b, s0))) < 1e-12
    g = np.empty_like(d)
    g[-1] = d[-1] + g_last
    for t in range(T - 2, -1, -1):
        g[t] = d[t] + a[t + 1] * g[t + 1]
    assert np.max(np.abs(reverse_linear_scan(a, d, g_last, block) - g)) < 1e-12


def test_linear_scan_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        linear_scan(np.ones((3, 2)), np.ones((4, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="s0: expected shape"):
        linear_scan(np.ones((3, 2)), np.ones((3, 2)), np.zeros(3))


EXPECTED = {  # the thread's cells and the five beyond, as the site states them
    "rnn": "full, state-dependent",
    "rnn_relu": "full, state-dependent",
    "gru_simple": "full, state-dependent",
    "gru": "full, state-dependent",
    "gru_torch": "full, state-dependent",
    "lstm": "full, state-dependent",
    "mgu": "full, state-dependent",
    "lstm_peephole": "full, state-dependent",
    "min_gru": "diagonal, state-independent, linear scan",
    "min_lstm": "diagonal, state-independent, linear scan",
    "indrnn": "diagonal, state-dependent",
}


@pytest.mark.parametrize("name", [n for n in derive.NAMES if n in EXPECTED])
def test_jacobian_classification(name: str) -> None:
    assert classify(derive.cell(name)).classification == EXPECTED[name]


def test_the_linear_scans_are_the_state_equations() -> None:
    """a ⊙ s(t−1) + b is the state's own equation, a its Jacobian's diagonal."""
    import sympy

    for name in SCAN_CELLS:
        cell = derive.cell(name)
        (s,) = classify(cell).scans
        node = cell.node(s.state)
        prev = sympy.Symbol(cell.states[0].prev)
        assert sympy.expand(s.a * prev + s.b - node.expr) == 0
        assert prev not in s.a.free_symbols | s.b.free_symbols
    assert SCAN_CELLS == ["min_gru", "min_lstm"]


def test_a_state_read_by_a_gate_is_not_a_scan() -> None:
    """minGRU with its gate reading c(t−1): the Jacobian reads the state, no scan."""
    from derive import CellBuilder
    from derive.functions import sigmoid

    b = CellBuilder("min_gru_state_gate", "t", "t")
    x, c_prev = b.input("x"), b.state("c")
    g = b.node("Gu", sigmoid(b.affine("z_u", "W_u", [c_prev, x], "b_u")))
    h = b.affine("h", "W_h", [x], "b_h")
    b.node("c", g * h + (1 - g) * c_prev)
    structure = classify(b.build(output="c"))
    assert structure.shape == "full" and not structure.state_independent and not structure.linear_scan
    with pytest.raises(NotAScanCell, match="not a linear scan"):
        scan.compile(b.build(output="c"))


def test_show_jacobian_prints_the_classification_for_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    from derive.cli import main

    for name in derive.NAMES:
        assert main(["show", name, "--jacobian"]) == 0
        assert f"classification: {name}: {classify(derive.cell(name)).classification}" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "derive.cli", "show", "min_gru", "--jacobian"],
                         capture_output=True, text=True, check=True).stdout  # the command itself, once
    assert "linear scan: c(t) = a(t) * c(t-1) + b(t), a = 1 - Gu, b = Gu*h" in out


@pytest.mark.parametrize("name", SCAN_CELLS)
@pytest.mark.parametrize("T", [1, 5, 130])
def test_scan_kernel_equals_loop_kernel(name: str, T: int) -> None:
    rng = np.random.default_rng(T)
    loop, fast = kernels.load(name), scan.load(name)
    params = {k: rng.normal(scale=0.8, size=v.shape) for k, v in loop.init_params(4, 6).items()}
    xs, state0 = rng.standard_normal((T, 3, 4)), {"c": rng.standard_normal((3, 6))}
    dys, dstate = rng.standard_normal((T, 3, 6)), {"c": rng.standard_normal((3, 6))}
    ys_l, cache_l = loop.forward(params, xs, state0)
    ys_s, cache_s = fast.forward(params, xs, state0)
    assert np.max(np.abs(ys_l - ys_s)) <= 1e-10 * max(1.0, np.max(np.abs(ys_l)))
    assert np.max(np.abs(cache_l["final"]["c"] - cache_s["final"]["c"])) <= 1e-10
    g_l, g_s = loop.backward(cache_l, dys, dstate), fast.backward(cache_s, dys, dstate)
    assert set(g_l) == set(g_s)
    for key in g_l:
        error = np.max(np.abs(g_l[key] - g_s[key])) / max(np.max(np.abs(g_l[key])), 1e-300)
        assert error <= 1e-10, f"{name} {key}: relative error {error:.1e}"


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_scan_kernel_gradients_match_finite_differences(name: str) -> None:
    errors = proof.finite_differences(scan.load(name), T=6, B=2, n_x=3, n_h=4, seed=2)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_scan_kernel_keeps_float32_and_checks_its_input(name: str) -> None:
    fast = scan.load(name)
    params = fast.init_params(3, 4, dtype=np.float32)
    ys, cache = fast.forward(params, np.ones((5, 2, 3), np.float32))
    assert ys.dtype == np.float32
    assert all(g.dtype == np.float32 for g in fast.backward(cache, np.ones((5, 2, 4), np.float32)).values())
    with pytest.raises(ValueError, match="xs"):
        fast.forward(params, np.ones((5, 2, 4), np.float32))


def test_the_committed_scan_kernels_are_the_generated_ones() -> None:
    from derive.render.scan_kernel import generate

    for name in SCAN_CELLS:
        committed = (kernels.__file__.rsplit("/", 1)[0] + f"/scan/{name}.py")
        with open(committed, encoding="utf-8") as f:
            assert f.read() == generate(derive.cell(name))


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_scan_kernel_cache_does_not_alias_the_inputs(name: str) -> None:
    fast = scan.load(name)
    params = fast.init_params(3, 4, seed=1)
    xs = np.random.default_rng(1).standard_normal((6, 2, 3))
    dys = np.ones((6, 2, 4))
    _, cache = fast.forward(params, xs)
    before = fast.backward(cache, dys)
    xs += 1.0
    for v in params.values():
        v *= 2.0
    after = fast.backward(cache, dys)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_linear_scan_into_works_in_place_on_any_view() -> None:
    """b in, states out, in the same array; a reversed or broadcast view of a is read as is."""
    rng = np.random.default_rng(3)
    T = 23  # not a multiple of the block length: the last steps follow one by one
    a, b, s0 = rng.uniform(-1.2, 1.2, (T, 2, 3)), rng.standard_normal((T, 2, 3)), rng.standard_normal((2, 3))
    for block in (None, 4, 5, 23, 40):
        states = np.empty((T + 1, 2, 3))
        states[0], states[1:] = s0, b
        assert linear_scan_into(a, states, block) is states
        assert np.max(np.abs(states - loop_states(a, b, s0))) < 1e-12
        reversed_a = a[::-1]  # a negative-stride view
        states[0], states[1:] = s0, b
        linear_scan_into(reversed_a, states, block)
        assert np.max(np.abs(states - loop_states(reversed_a.copy(), b, s0))) < 1e-12
    with pytest.raises(ValueError, match="states: expected an array of shape"):
        linear_scan_into(a, np.zeros((T, 2, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_scan_is_exact_where_a_is_zero_and_where_products_underflow(dtype: type) -> None:
    """a(t) = 0 forgets the past exactly, as the loop does; products of a that
    underflow (1e-3 over 64 steps is 1e-192: 0 in float32) change nothing that
    the loop keeps: no logarithm, no division, no NaN."""
    rng = np.random.default_rng(4)
    T = 300
    a = np.full((T, 2, 5), 1e-3, dtype)
    a[150:] = rng.uniform(0.5, 1.0, (T - 150, 2, 5))  # then long memory
    a[::7] = 0
    b = rng.standard_normal((T, 2, 5)).astype(dtype)
    s0 = rng.standard_normal((2, 5)).astype(dtype)
    loop = np.empty((T + 1, 2, 5), dtype)
    loop[0] = s0
    for t in range(T):
        loop[t + 1] = a[t] * loop[t] + b[t]
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    for block in (None, 8, 64):
        states = linear_scan(a, b, s0, block)
        assert states.dtype == dtype and np.all(np.isfinite(states))
        assert np.array_equal(states[1::7], b[::7])  # a(t) = 0: s(t) = b(t), to the bit
        assert np.max(np.abs(states - loop)) <= tolerance * np.max(np.abs(loop))
        g = reverse_linear_scan(a, b, s0, block)
        assert np.all(np.isfinite(g)) and g.dtype == dtype


def test_chunk_steps() -> None:
    from derive.scan import CHUNK_ELEMENTS, chunk_steps

    assert chunk_steps(4096, 512) == CHUNK_ELEMENTS // 512
    assert chunk_steps(5, 512) == 5  # never more than the sequence
    assert chunk_steps(100, 10 * CHUNK_ELEMENTS) == 1  # at least one step
    with pytest.raises(ValueError, match="steps, width"):
        chunk_steps(-1, 4)


@pytest.mark.parametrize("name", SCAN_CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scan_kernel_over_many_chunks_equals_loop_kernel(name: str, dtype: type,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 7 steps over T = 130 (the last one shorter): the state and the
    gradient carried from chunk to chunk, forward and backward, in float64 and
    float32, with a gate saturated on two units."""
    import derive.scan

    B, n_x, n_h = 3, 4, 6
    monkeypatch.setattr(derive.scan, "CHUNK_ELEMENTS", 7 * B * n_h)
    rng = np.random.default_rng(5)
    loop, fast = kernels.load(name), scan.load(name)
    params = {k: rng.normal(scale=0.8, size=v.shape).astype(dtype)
              for k, v in loop.init_params(n_x, n_h, dtype=dtype).items()}
    first_bias = next(v for v in params.values() if v.ndim == 1)
    first_bias[:2] = (60, -60)  # a first gate saturated: σ(60) = 1 to the bit, a(t) = 0 or 1 for minGRU
    xs, state0 = rng.standard_normal((130, B, n_x)).astype(dtype), {"c": rng.standard_normal((B, n_h)).astype(dtype)}
    dys, dstate = rng.standard_normal((130, B, n_h)).astype(dtype), {"c": rng.standard_normal((B, n_h)).astype(dtype)}
    ys_l, cache_l = loop.forward(params, xs, state0)
    ys_s, cache_s = fast.forward(params, xs, state0)
    tolerance = 1e-10 if dtype == np.float64 else 2e-5
    assert ys_s.dtype == dtype
    assert np.max(np.abs(ys_l - ys_s)) <= tolerance * max(1.0, np.max(np.abs(ys_l)))
    g_l, g_s = loop.backward(cache_l, dys, dstate), fast.backward(cache_s, dys, dstate)
    for key in g_l:
        assert g_s[key].dtype == dtype
        error = np.max(np.abs(g_l[key] - g_s[key])) / max(np.max(np.abs(g_l[key])), 1e-30)
        assert error <= tolerance, f"{name} {dtype.__name__} {key}: relative error {error:.1e}"


def test_scan_printer_writes_the_same_values_with_fewer_passes() -> None:
    """The scan printer moves a sign into a sum (−u(v − w) as u(w − v)) and
    writes a node's last operation into its array: same values as SymPy's."""
    import sympy

    from derive.render.scan_kernel import _into, _ScanPrinter

    u, v, w, z = sympy.symbols("u v w z")
    rng = np.random.default_rng(6)
    values = {str(s): rng.uniform(0.2, 2.0, 5) for s in (u, v, w, z)}
    printer = _ScanPrinter({}, {})
    for expr in [-u * (v - w), w - v, -u * v * (v - 1), -u / (v + w), -u * (v - 1) / (v + w) ** 2,
                 1 - u, -u - v, u * (1 - w) - v * z - 3, -(v - 1) ** 2 * u, sympy.tanh(-u * (v - w))]:
        expected = sympy.lambdify([u, v, w, z], expr, "numpy")(*values.values())
        printed = printer.doprint(expr)
        got = eval(printed, {"np": np, **values})  # noqa: S307 - our own printed expression
        np.testing.assert_allclose(got, expected, rtol=1e-14, err_msg=printed)
        out = np.empty(5)
        exec(_into(printer, expr, "out"), {"np": np, "out": out, **values})  # noqa: S102
        np.testing.assert_allclose(out, expected, rtol=1e-14, err_msg=_into(printer, expr, "out"))
    assert [printer.doprint(e) for e in (-u * (v - w), w - v, -u * v * (v - 1))] == ["u*(w - v)", "w - v", "u*v*(1 - v)"]
    assert _into(printer, -u * v * (v - 1), "out") == "np.multiply(u*v, 1 - v, out=out)"


@pytest.mark.parametrize("reads_a_node", [True, False])
def test_scan_kernel_of_a_cell_with_every_kind_of_node(reads_a_node: bool) -> None:
    """Linear-scan cells of one's own that the built-in ones do not cover: an
    input GEMM without bias, a node that is a copy of its affine one, a
    per-element parameter in a(t), and (``reads_a_node``) an affine node
    reading another node (a GEMM per chunk) under a tanh that is not in
    place, or else every δz side by side with one bias missing. Each scan
    kernel equals its loop kernel and finite differences, over several chunks."""
    import derive.scan
    from derive import CellBuilder
    from derive.functions import sigmoid

    b = CellBuilder("scan_kinds", "every kind of node", "a test cell")
    x, c_prev = b.input("x"), b.state("c")
    u = b.param("u")
    g = b.node("G", sigmoid(b.affine("z_g", "W_g", [x])))
    h = b.node("h", b.affine("z_h", "W_h", [x], "b_h"))
    if reads_a_node:
        h = h + b.node("k", sympy_tanh(b.affine("z_k", "W_k", [g, x], "b_k")))
    b.node("c", u * (1 - g) * c_prev + g * h)
    cell = b.build(output="c")
    assert classify(cell).linear_scan
    loop, fast = kernels.compile(cell), scan.compile(cell)
    rng = np.random.default_rng(7)
    params = {name: rng.normal(scale=0.7, size=v.shape) for name, v in loop.init_params(4, 5).items()}
    xs, state0 = rng.standard_normal((40, 2, 4)), {"c": rng.standard_normal((2, 5))}
    dys, dstate = rng.standard_normal((40, 2, 5)), {"c": rng.standard_normal((2, 5))}
    old = derive.scan.CHUNK_ELEMENTS
    try:
        derive.scan.CHUNK_ELEMENTS = 6 * 2 * 5  # chunks of 6 steps
        ys_l, cache_l = loop.forward(params, xs, state0)
        ys_s, cache_s = fast.forward(params, xs, state0)
        assert np.max(np.abs(ys_l - ys_s)) <= 1e-10 * max(1.0, np.max(np.abs(ys_l)))
        g_l, g_s = loop.backward(cache_l, dys, dstate), fast.backward(cache_s, dys, dstate)
        for key in g_l:
            error = np.max(np.abs(g_l[key] - g_s[key])) / max(np.max(np.abs(g_l[key])), 1e-300)
            assert error <= 1e-10, f"{key}: relative error {error:.1e}"
        errors = proof.finite_differences(fast, T=7, B=2, n_x=3, n_h=4, seed=3)
    finally:
        derive.scan.CHUNK_ELEMENTS = old
    assert max(errors.values()) < 1e-6, errors


def sympy_tanh(z):  # noqa: ANN001, ANN201 - the builder's argument, SymPy's tanh
    import sympy

    return sympy.tanh(z)


@pytest.mark.parametrize("name", ["min_gru", "min_lstm"])
def test_a_cache_of_the_other_kernel_is_refused_by_name(name: str) -> None:
    """The loop and the scan kernels cache different arrays: each backward
    refuses the other's cache in one line instead of a KeyError (or a
    gradient read from arrays that mean something else)."""
    loop, fast = kernels.load(name), scan.load(name)
    params = loop.init_params(3, 4)
    xs, dys = np.ones((5, 2, 3)), np.ones((5, 2, 4))
    with pytest.raises(ValueError, match=rf"expected the cache of {name}\.forward\(\), got one from {name} \(parallel scan\)"):
        loop.backward(fast.forward(params, xs)[1], dys)
    with pytest.raises(ValueError, match=rf"expected the cache of {name} \(parallel scan\)\.forward\(\), got one from {name}\.forward"):
        fast.backward(loop.forward(params, xs)[1], dys)
