"""The Numba backend: chosen by name, absent without breaking anything else,
and computing what the NumPy kernels compute for every cell (the gradient
and parity tests themselves run on both backends through the ``backend``
fixture of conftest.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

import derive
from derive import kernels
from derive.functions import sigmoid

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
USER_CELL_FILES = sorted((HERE / "user_cells").glob("*.py")) + sorted((HERE / "cells").glob("*.cell"))


def _numba_or_skip() -> None:
    if importlib.util.find_spec("numba") is None:
        reason = "numba is not installed: pip install -e '.[fast]'"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a) + np.abs(b))), 1e-300))


@pytest.mark.parametrize("backend", ["jax", "Numba", "", None, 1])
def test_a_bad_backend_is_named(backend: object) -> None:
    with pytest.raises(ValueError, match=r"^backend: expected one of 'numpy', 'numba', got " + repr(backend).replace("(", r"\(")):
        kernels.load("gru", backend=backend)
    with pytest.raises(ValueError, match="^backend: "):
        kernels.generate(derive.cell("gru"), backend=backend)


def test_without_numba_the_numba_backend_says_how_to_install_it_and_the_rest_works(tmp_path: Path) -> None:
    """Numba hidden from the import system: the Numba kernels say how to get
    it; the NumPy kernels, generating the Numba sources and ``derive check`` work."""
    script = """
import sys
sys.modules["numba"] = None  # as if the fast extra were not installed
import numpy as np
from derive import kernels
from derive.cli import main
try:
    kernels.load("lstm", backend="numba")
except kernels.BackendUnavailableError as e:
    print("ERROR", e)
import derive
try:
    kernels.compile(derive.cell("gru"), backend="numba")
except ImportError as e:
    print("COMPILE", e)
k = kernels.load("lstm")
ys, cache = k.forward(k.init_params(2, 3), np.ones((4, 1, 2)))
print("NUMPY", ys.shape)
print("SOURCE", "@numba.njit" in kernels.generate(derive.cell("gru"), backend="numba"))
print("CHECK", main(["check"]))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert 'ERROR the numba backend needs Numba, which is not installed: pip install -e ".[fast]"' in lines
    assert any(line.startswith("COMPILE the numba backend needs Numba") for line in lines)
    assert "NUMPY (4, 1, 3)" in lines and "SOURCE True" in lines and "CHECK 0" in lines


def _cells() -> list[tuple[str, derive.Cell]]:
    built_in = [(n, derive.cell(n)) for n in derive.NAMES]
    own = [(f"{p.parent.name}/{p.name}", derive.load_cell(p)) for p in USER_CELL_FILES]
    return built_in + own


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("label,cell", _cells(), ids=[label for label, _ in _cells()])
def test_both_backends_compute_the_same(label: str, cell: derive.Cell, dtype: type) -> None:
    """Outputs, final states and every gradient of the Numba kernel equal the
    NumPy kernel's to float precision, for the built-in cells and the cells of
    tests/user_cells and tests/cells (compiled from their files)."""
    _numba_or_skip()
    ours, ref = kernels.load(cell, backend="numba"), kernels.load(cell)
    rng = np.random.default_rng(5)
    T, B, n_x, n_h = 7, 3, 4, 21  # n_h: whole SIMD vectors, and elements after them
    params = {k: (rng.normal(scale=0.6, size=v.shape)).astype(dtype) for k, v in ref.init_params(n_x, n_h).items()}
    xs = rng.normal(size=(T, B, n_x)).astype(dtype)
    state0 = {s: rng.normal(scale=0.5, size=(B, n_h)).astype(dtype) for s in ref.STATES}
    dys = rng.normal(size=(T, B, n_h)).astype(dtype)
    dstate = {s: rng.normal(size=(B, n_h)).astype(dtype) for s in ref.STATES}
    tol = 1e-12 if dtype == np.float64 else 2e-5
    (ys, cache), (ys_ref, cache_ref) = ours.forward(params, xs, state0), ref.forward(params, xs, state0)
    assert ys.dtype == dtype and rel_error(ys, ys_ref) < tol
    assert sorted(cache) == sorted(cache_ref)  # the same cache keys: what reads a cache reads either
    for s in ref.STATES:
        assert rel_error(cache["final"][s], cache_ref["final"][s]) < tol
    grads, grads_ref = ours.backward(cache, dys, dstate), ref.backward(cache_ref, dys, dstate)
    assert sorted(grads) == sorted(grads_ref)
    for k in grads_ref:
        assert grads[k].dtype == dtype and grads[k].shape == grads_ref[k].shape, k
        assert rel_error(grads[k], grads_ref[k]) < tol, f"{label} d{k}: {rel_error(grads[k], grads_ref[k]):.1e}"


@pytest.mark.parametrize("name", derive.NAMES)
def test_sizes_of_one_agree_with_numpy(name: str) -> None:
    """B, n_x or n_h of 1, both dtypes: the same values as the NumPy kernel.
    With n_h = 1 the GRU's W_hcᵀ is a (1, 1) array with strides (8, 40),
    C-contiguous for NumPy: the gemm refused it until a stride of a dimension
    of length 1 was no longer compared."""
    _numba_or_skip()
    numpy_kernel, numba_kernel = kernels.load(name), kernels.load(name, backend="numba")
    for T, B, n_x, n_h in ((3, 1, 1, 1), (2, 3, 4, 1), (2, 1, 3, 4), (2, 3, 1, 17)):
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
            params = numpy_kernel.init_params(n_x, n_h, seed=1, dtype=dtype)
            rng = np.random.default_rng(0)
            xs, dys = rng.normal(size=(T, B, n_x)).astype(dtype), rng.normal(size=(T, B, n_h)).astype(dtype)
            (ys, cache), (ys_nb, cache_nb) = numpy_kernel.forward(params, xs), numba_kernel.forward(params, xs)
            grads, grads_nb = numpy_kernel.backward(cache, dys), numba_kernel.backward(cache_nb, dys)
            for key, got, want in (("ys", ys_nb, ys), *((k, grads_nb[k], grads[k]) for k in grads)):
                scale = max(1.0, float(np.max(np.abs(want))))  # a ReLU's ys may be all zeros
                assert float(np.max(np.abs(got - want))) / scale < tol, (key, T, B, n_x, n_h, dtype)


@pytest.mark.parametrize("name", derive.NAMES)
def test_inputs_in_any_memory_order_agree_with_numpy(name: str) -> None:
    """Fortran-ordered weights, xs, state0 and dstate and a strided dys give
    the NumPy kernel's values: the wrapper copies them in C order, as the
    products and the flat loops read them (a Fortran-ordered dstate or a
    Fortran-ordered weight of a cell with several blocks was refused)."""
    _numba_or_skip()
    numpy_kernel, numba_kernel = kernels.load(name), kernels.load(name, backend="numba")
    T, B, n_x, n_h = 4, 3, 5, 6
    params = numpy_kernel.init_params(n_x, n_h, seed=2)
    fortran = {k: np.asfortranarray(v) for k, v in params.items()}
    rng = np.random.default_rng(0)
    xs = np.asfortranarray(rng.normal(size=(T, B, n_x)))
    dys = rng.normal(size=(B, T, n_h)).transpose(1, 0, 2)
    states = {s.name: np.asfortranarray(rng.normal(size=(B, n_h))) for s in derive.cell(name).states}
    ys, cache = numpy_kernel.forward(params, xs, states)
    ys_nb, cache_nb = numba_kernel.forward(fortran, xs, states)
    grads, grads_nb = numpy_kernel.backward(cache, dys, states), numba_kernel.backward(cache_nb, dys, states)
    assert rel_error(ys_nb, ys) < 1e-12
    for key in grads:
        assert rel_error(grads_nb[key], grads[key]) < 1e-12, key


def test_float32_kernels_compute_in_float32() -> None:
    """No float64 arithmetic in a float32 step loop: every number of the
    fused statements is a constant of the arrays' dtype (a Python float
    literal would promote the loop to float64, half as fast)."""
    _numba_or_skip()
    import numba

    module = kernels.load("gru_torch", backend="numba")
    params = module.init_params(3, 4, dtype=np.float32)
    xs = np.ones((2, 2, 3), np.float32)
    ys, cache = module.forward(params, xs)
    calls = []  # the arguments of the compiled loops, captured from a real run
    originals = {name: getattr(module, name) for name in ("_forward_steps", "_backward_steps")}
    for name, original in originals.items():
        setattr(module, name, lambda *a, original=original: (calls.append(a), original(*a))[1])
    try:
        ys, cache = module.forward(params, xs)
        module.backward(cache, np.ones_like(ys))
    finally:
        for name, original in originals.items():
            setattr(module, name, original)
    for name, args in zip(("_forward_steps", "_backward_steps"), calls):
        fresh = numba.njit(error_model="numpy")(originals[name].py_func)  # not from the cache: inspectable
        fresh(*args)
        ir = "\n".join(fresh.inspect_llvm().values())
        arithmetic = [line for line in ir.splitlines() if any(f" {op} double" in line for op in ("fadd", "fsub", "fmul", "fdiv"))]
        assert arithmetic == [], f"{name}: float64 arithmetic in the float32 loop: {arithmetic[:3]}"
        assert " fmul float" in ir or " fmul <" in ir


def test_a_numba_kernel_names_the_runtime_it_was_made_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numba's on-disk cache is invalidated by a change of the kernel's own
    file only: each kernel names the runtime it was generated with, so that
    a new runtime makes the kernels stale (``derive check``) and, rebuilt,
    recompiled."""
    from derive.render import numba_kernel

    digest = numba_kernel.runtime_digest()
    for name in derive.NAMES:
        assert f"derive/runtime_numba.py {digest} " in (ROOT / "derive" / "kernels" / "numba" / f"{name}.py").read_text()
    before = kernels.generate(derive.cell("gru"), backend="numba")
    monkeypatch.setattr(numba_kernel, "runtime_digest", lambda: "sha256:0000000000000000")
    assert kernels.generate(derive.cell("gru"), backend="numba") != before


@pytest.mark.parametrize("bias", ["z_b", "a_next_b"])
def test_a_bias_whose_gradient_is_named_like_a_local_of_the_loop_is_summed_apart(bias: str) -> None:
    """The backward loop sums each bias's gradient into an argument named
    after it (d_<bias>): for z_b or a_next_b that name is already a row view
    of the loop (d_z_b, d_a_next_b), which would silently receive the sum.
    Both backends must agree."""
    _numba_or_skip()
    builder = derive.CellBuilder("bias_names", "Bias names", "A cell whose biases are named like the kernels' locals.")
    x, a_prev = builder.input("x"), builder.state("a")
    z = builder.affine("z", "W", [a_prev, x], bias)
    g = builder.node("G", sigmoid(builder.affine("g", "U", [x], "c")))
    builder.node("a", g * sympy.tanh(z) + (1 - g) * a_prev)
    cell = builder.build(output="a")
    ours, ref = kernels.load(cell, backend="numba"), kernels.load(cell)
    rng = np.random.default_rng(3)
    params = {k: rng.normal(size=v.shape) + (2.0 if k == bias else 0.0) for k, v in ref.init_params(3, 4).items()}
    xs, dys = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 4))
    (ys, cache), (ys_ref, cache_ref) = ours.forward(params, xs), ref.forward(params, xs)
    assert rel_error(ys, ys_ref) < 1e-12
    grads, grads_ref = ours.backward(cache, dys), ref.backward(cache_ref, dys)
    for k in grads_ref:
        assert rel_error(grads[k], grads_ref[k]) < 1e-12, k


@pytest.mark.parametrize("name", derive.NAMES)
def test_the_compiled_loops_receive_only_c_contiguous_arrays(name: str) -> None:
    """Every array the wrappers hand to the compiled loops is C-contiguous:
    an F-ordered one (a concatenate of transposed blocks is one) makes Numba
    compile a second version of the loop, whose products run slower."""
    _numba_or_skip()
    kernel = kernels.load(name, backend="numba")
    rng = np.random.default_rng(0)
    params = kernel.init_params(3, 4)
    ys, cache = kernel.forward(params, rng.normal(size=(5, 2, 3)))
    kernel.backward(cache, rng.normal(size=ys.shape))
    for steps in (kernel._forward_steps, kernel._backward_steps):
        for signature in steps.signatures:
            layouts = {str(t) for t in signature if getattr(t, "layout", "C") != "C"}
            assert not layouts, f"{name} {steps.__name__}: {sorted(layouts)}"


# Callees of compiled code that are C library calls: each stops LLVM from
# vectorising the loop around it (a float ** is a pow, ~30 ns an element).
_LIBM = re.compile(r"^(llvm\.)?(pow|powi|exp|exp2|expm1|log|log2|log10|log1p|sin|cos|tan|tanh|sinh|cosh|atan)(f|\.\w+)?$")


@pytest.mark.parametrize("name", derive.NAMES)
def test_the_compiled_loops_vectorise_and_call_no_c_library_function(name: str) -> None:
    """The fused loops compile (float64, without the cache, so that their LLVM
    IR can be read) to SIMD code that calls no libm function: σ and tanh are
    the runtime's arithmetic, and powers are products (min_lstm's
    (G_f + G_i)⁻² was a pow per element, its backward 2.6× slower). The
    LSTM's backward loop, with the bias sums and a stacked copy of δz in it,
    had no vector instruction at all: LLVM gives up when a loop writes too
    many arrays."""
    _numba_or_skip()
    import numba

    kernel = kernels.load(name, backend="numba")
    rng = np.random.default_rng(0)
    ys, cache = kernel.forward(kernel.init_params(3, 4), rng.normal(size=(5, 2, 3)))
    kernel.backward(cache, rng.normal(size=ys.shape))
    for steps in (kernel._forward_steps, kernel._backward_steps):
        signature = steps.signatures[0]
        fresh = numba.njit(error_model="numpy")(steps.py_func)  # cached code cannot be inspected
        fresh.compile(signature)
        callees = set(re.findall(r'call [^@(]*@"?([\w.$]+)', fresh.inspect_llvm(signature)))
        assert callees, f"{name} {steps.__name__}: no call found in its LLVM IR (the pattern is stale)"
        libm = sorted(c for c in callees if _LIBM.match(c))
        assert not libm, f"{name} {steps.__name__} calls {libm}"
        assert re.search(r"<\d+ x double>", fresh.inspect_llvm(signature)), f"{name} {steps.__name__}: no vector code"


def test_a_cell_without_biases_and_with_a_block_without_x_agrees_with_numpy() -> None:
    """The products around the compiled loops for the layouts no built-in cell
    has: no bias at all (``project`` gets an empty stack of biases), and an
    affine node that does not read x(t) before one that does."""
    _numba_or_skip()
    builder = derive.CellBuilder("bare", "Bare", "No bias; the candidate does not read x(t).")
    x, a_prev = builder.input("x"), builder.state("a")
    h = builder.node("h", sympy.tanh(builder.affine("z_h", "W_h", [a_prev])))
    g = builder.node("G", sigmoid(builder.affine("z_g", "W_g", [x, a_prev])))
    builder.node("a", g * h + (1 - g) * a_prev)
    cell = builder.build(output="a")
    source = kernels.generate(cell, backend="numba")
    assert "biases = np.empty((0, n_h), dtype)" in source and "Z.reshape(2, T * B, n_h)" in source
    assert "weight_gradient(dZ2, 0, a_prev_steps, d_W_g, n_x)" in source  # a(t-1)'s columns after x(t)'s in W_g
    ours, ref = kernels.load(cell, backend="numba"), kernels.load(cell)
    rng = np.random.default_rng(4)
    params = {k: rng.normal(size=v.shape) for k, v in ref.init_params(3, 5).items()}
    xs, dys = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2, 5))
    (ys, cache), (ys_ref, cache_ref) = ours.forward(params, xs), ref.forward(params, xs)
    assert rel_error(ys, ys_ref) < 1e-12
    grads, grads_ref = ours.backward(cache, dys), ref.backward(cache_ref, dys)
    assert sorted(grads) == sorted(grads_ref)
    for k in grads_ref:
        assert rel_error(grads[k], grads_ref[k]) < 1e-12, k


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_runtime_products_around_the_loops(dtype: type) -> None:
    """``project``, ``dot``, ``dot_add``, ``input_gradient``,
    ``weight_gradient``, ``block_sums`` and ``gemm`` of derive.runtime_numba against NumPy, on every branch: blocks
    with and without an x part, with and without biases, δx from some blocks
    only, a part's columns written into the middle of a weight."""
    _numba_or_skip()
    from derive import runtime_numba as rt

    rng = np.random.default_rng(1)
    xs, W_x, b = rng.normal(size=(6, 3)).astype(dtype), rng.normal(size=(2, 3, 4)).astype(dtype), rng.normal(size=(3, 4)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for biases in (b, np.empty((0, 4), dtype)):
        Z = np.full((3, 6, 4), np.nan, dtype)  # nothing of it may be read
        rt.project(xs, W_x, biases, Z)
        want = np.concatenate([xs @ W_x, np.zeros((1, 6, 4), dtype)])
        if len(biases):
            want += biases[:, None, :]
        assert rel_error(Z, want) < tol
    a, w = rng.normal(size=(6, 4)).astype(dtype), rng.normal(size=(4, 3)).astype(dtype)
    product = np.full((6, 3), np.nan, dtype)  # beta = 0: nothing of it may be read
    rt.dot(a, w, product)
    assert rel_error(product, a @ w) < tol
    rt.dot_add(a, w, product)  # beta = 1: adds into it
    assert rel_error(product, 2 * (a @ w)) < tol
    # δx: the products of the first len(W) dZ blocks (not the others) added up
    dZ, W = rng.normal(size=(3, 6, 4)).astype(dtype), rng.normal(size=(2, 4, 3)).astype(dtype)
    d_xs = np.full((6, 3), np.nan, dtype)
    rt.input_gradient(dZ, W, d_xs)
    assert rel_error(d_xs, dZ[0] @ W[0] + dZ[1] @ W[1]) < tol
    # δW: a part's columns, the others untouched
    part = rng.normal(size=(6, 2)).astype(dtype)
    d_W = np.full((4, 7), 7.0, dtype)
    rt.weight_gradient(dZ, 1, part, d_W, 3)
    assert rel_error(d_W[:, 3:5], dZ[1].T @ part) < tol
    assert (d_W[:, :3] == 7).all() and (d_W[:, 5:] == 7).all()
    # δb: each block's sum over its rows, and whether all sums are finite
    sums = np.full((3, 4), np.nan, dtype)
    assert rt.block_sums(dZ, sums) is True
    assert rel_error(sums, dZ.sum(axis=1)) < tol
    for bad in (np.nan, np.inf):
        broken = dZ.copy()
        broken[2, 5, 1] = bad
        assert rt.block_sums(broken, sums) is False
    grad = np.full((4, 9), 7.0, dtype)
    # gemm trusts BLAS with raw pointers: an operand it cannot describe so is refused, not misread
    for bad in ((a.T.copy().T, w, product, 0), (a, w[:, :2], product, 0), (a, w, grad[:, :3], 0), (a, w, product, 1)):
        with pytest.raises(ValueError, match="gemm: expected C-contiguous operands of matching shapes"):
            rt.gemm(*bad, False, 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_products_over_all_steps_cut_into_pieces(dtype: type) -> None:
    """Products long in T·B (5000 rows, 16 × 16 per row: pieces of 3906 and
    1094 rows) give the whole product: δW adds its pieces (into a column
    block, β = 0 on the first only, or β = 1 on all), δx and Z keep each
    piece's rows; a product too wide for pieces of 32 rows runs whole."""
    _numba_or_skip()
    from derive import runtime_numba as rt

    rng = np.random.default_rng(2)
    rows = 5000
    tol = 1e-12 if dtype == np.float64 else 1e-5
    dZ = rng.normal(size=(2, rows, 16)).astype(dtype)
    part = rng.normal(size=(rows, 16)).astype(dtype)
    d_W = np.full((16, 20), 7.0, dtype)
    rt.weight_gradient(dZ, 1, part, d_W, 2)
    assert rel_error(d_W[:, 2:18], dZ[1].T @ part) < tol
    assert (d_W[:, :2] == 7).all() and (d_W[:, 18:] == 7).all()
    added = np.ones((16, 16), dtype)
    rt.gemm_in_pieces(dZ[0], part, added, 0, True, 1.0)
    assert rel_error(added, 1 + dZ[0].T @ part) < tol
    W = rng.normal(size=(2, 16, 16)).astype(dtype)
    d_xs = np.full((rows, 16), np.nan, dtype)
    rt.input_gradient(dZ, W, d_xs)
    assert rel_error(d_xs, dZ[0] @ W[0] + dZ[1] @ W[1]) < tol
    xs, b = rng.normal(size=(rows, 16)).astype(dtype), rng.normal(size=(1, 16)).astype(dtype)
    Z = np.full((1, rows, 16), np.nan, dtype)
    rt.project(xs, W[:1], b, Z)
    assert rel_error(Z[0], xs @ W[0] + b[0]) < tol
    wide_a, wide_b = rng.normal(size=(64, 200)).astype(dtype), rng.normal(size=(64, 200)).astype(dtype)
    whole = np.empty((200, 200), dtype)
    rt.gemm_in_pieces(wide_a, wide_b, whole, 0, True, 0.0)
    assert rel_error(whole, wide_a.T @ wide_b) < tol


def test_a_numba_kernel_loads_scipys_blas_without_scipy_linalg(tmp_path: Path) -> None:
    """A Numba kernel's products run on SciPy's ``cython_blas`` loaded alone
    (``derive.scipy_blas``), not after all of ``scipy.linalg``; a later
    ``import scipy.linalg`` sees that very module as its ``cython_blas``, and
    the rest of scipy.linalg works. If scipy.linalg came first, it is used as is."""
    _numba_or_skip()
    script = """
import sys
import numpy as np
first = sys.argv[1] == "linalg-first"
if first:
    import scipy.linalg
from derive import kernels, scipy_blas
k = kernels.load("gru", backend="numba")
params = k.init_params(3, 5)
xs = np.random.default_rng(0).normal(size=(4, 2, 3))
ys, cache = k.forward(params, xs)
grads = k.backward(cache, np.ones_like(ys))
ref = kernels.load("gru")
ys_ref, cache_ref = ref.forward(params, xs)
print("AGREE", float(abs(ys - ys_ref).max()) < 1e-12 and float(abs(grads["W_u"] - ref.backward(cache_ref, np.ones_like(ys))["W_u"]).max()) < 1e-12)
print("LINALG", "scipy.linalg" in sys.modules)
module = sys.modules["scipy.linalg.cython_blas"]
import scipy.linalg
import scipy.linalg.cython_blas
from scipy.linalg import cython_blas
print("BOUND", scipy.linalg.cython_blas is module and cython_blas is module)
print("BLAS", float(scipy.linalg.blas.dgemm(2.0, np.eye(2), np.ones((2, 2)))[0, 1]))
print("HOOKS", sum(type(f).__module__ == "derive.scipy_blas" for f in sys.meta_path))
"""
    seen = {}
    for order in ("kernel-first", "linalg-first"):
        proc = subprocess.run([sys.executable, "-c", script, order], capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        seen[order] = proc.stdout.splitlines()
    assert seen["kernel-first"] == ["AGREE True", "LINALG False", "BOUND True", "BLAS 2.0", "HOOKS 0"]
    assert seen["linalg-first"] == ["AGREE True", "LINALG True", "BOUND True", "BLAS 2.0", "HOOKS 0"]
