"""Time the generated kernels, NumPy and Numba, against PyTorch's CPU modules.

For each cell, shape and dtype, forward and forward+backward: the generated
NumPy kernel (``derive.kernels.load(name)``), the generated Numba kernel
(``load(name, backend="numba")``), the nearest PyTorch module
(:data:`NEAREST_MODULE`: the cell's own for rnn, rnn_relu, gru_torch and
lstm, else ``nn.GRU``, ``nn.LSTM`` or ``nn.RNN``), and two *GEMM floors*.
Three shapes (``--shapes``): small (T=20, B=4, n_x=8, n_h=16), medium
(T=100, B=16, n_x=32, n_h=64) and large (T=100, B=32, n_x=64, n_h=128).

Two tables, forward+backward first, then forward alone. Their columns:

- ``numpy``, ``numba``, ``torch``: median time in ms over ``--repeat``
  interleaved rounds (the callables alternate their order from one round to
  the next, so that a slow spell of this shared machine hits them alike).
- ``np/to``, ``nb/to``, ``nb/np``: time ratios numpy/torch, numba/torch,
  numba/numpy, each the median over rounds of the two times measured in the
  same round (steadier than a ratio of two medians taken moments apart).
- ``npfl``: the NumPy floor, the cell's matrix products timed alone with
  NumPy's ``np.matmul`` from Python, as a fraction of the NumPy kernel's time
  (1.0: the kernel would spend all its time in unavoidable GEMMs). Its
  products come from the cell's structure (:func:`gemm_floor`): every
  input part of every affine node in one GEMM over all time steps,
  (T·B, n_x) × (n_x, G·n_h); each other part vector p (c(t−1), G_r ⊙ c(t−1),
  …) one GEMM per step, (B, n_h) × (n_h, k_p·n_h), k_p the number of affine
  nodes acting on p; backward the transposed GEMM per step and part, one
  GEMM for dxs and one weight-gradient GEMM per part over the stacked steps.
- ``calls`` (f+b only): the NumPy kernel on the same T with B = n_x = n_h = 1,
  whose arrays hold one element, so that only the per-call cost of Python
  and NumPy remains, as a fraction of the kernel's time. ``bound``: the
  floor fraction the NumPy kernel would reach if every call were free,
  floor / (kernel − calls) ("-" where the calls are most of the time and
  the difference is noise).
- ``nbfl``: the Numba kernel's own GEMM floor, measured inside compiled
  code, as a fraction of the Numba kernel's time. One ``numba.njit``
  function does exactly the matrix products the Numba kernel does, read
  from the kernel plan (:func:`plan_gemms`, from
  ``derive.render.plan.plan_kernel``): the input projection (one GEMM per
  block fed by x(t)), the state and node GEMMs of every forward step (one
  per block) and the adjoint GEMMs of every backward step (one per block)
  inside a loop over t, then δx (one GEMM per block) and the weight
  gradients (one per column block, the δz operand a transposed view as in
  the kernel); the kernel sums the bias gradients after its backward loop
  (a pass over δz, not a product; nor is the bias row of its input
  projection counted). Into preallocated outputs, on 2-D contiguous arrays
  of the row's dtype: the products of a step through ``np.dot``, the ones
  over all steps cut into pieces as the kernel cuts them (the runtime's
  ``gemm_in_pieces``); SciPy's OpenBLAS, which the kernel calls too
  (through the runtime's ``gemm``). At start the script
  checks this list against :func:`gemm_floor`'s (the same multiply-adds)
  and prints what differs.

After the tables, the issue's targets (:data:`TARGETS`) are checked row by
row and every miss is listed with its figure. Then the cold compile time of
every Numba kernel in both dtypes, in a fresh process whose
``NUMBA_CACHE_DIR`` is an empty temporary directory (the checkout's caches
are neither read nor written), and in a later fresh process on that cache,
the import of ``derive.kernels`` and of Numba, load and first call of one
kernel (and of a second one): what a training script pays before its first
step. Last, the parallel-scan table (below).

Everything runs on ``--threads`` threads (default 1): ``torch.set_num_threads``
for torch, threadpoolctl for both BLAS libraries, NumPy's OpenBLAS and the
SciPy OpenBLAS Numba's ``np.dot`` calls (loaded first, by importing
``scipy.linalg.cython_blas``, so that the limit applies to it: the printed
threadpool list shows both). One thread is the default because the per-step
products are small (B × n_h by n_h × k·n_h), where a second thread mostly
adds synchronisation, and a single thread makes repeated runs stable on a
shared 2-core machine.

Run::

    python benchmarks/kernels.py                          # full run
    python benchmarks/kernels.py --quick                  # smoke run, a few seconds
    python benchmarks/kernels.py --backends numpy         # without Numba
    python benchmarks/kernels.py --shapes small,medium --repeat 5
    python benchmarks/kernels.py --scan-only              # the parallel scan against the step loop

The Numba backend is skipped, with the reason printed, when Numba is not
installed (``pip install -e ".[fast]"``).

The last table times the parallel-scan kernels of the linear-scan cells
(``derive.kernels.scan``) against their step-loop kernels at T = 4096,
B = 8, n_x = n_h = 64, float64, and prints the ratio scan/loop.

This machine may set ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``, which can
slow a current NumPy's OpenBLAS; the script prints them and what
threadpoolctl reports, and leaves them alone. To measure without them::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/kernels.py
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import derive
from derive import kernels
from derive.kernels import scan
from derive.graph import Affine
from derive.interop.torch import to_torch
from derive.render.plan import AdjointGemm, NodeGemm, StateAdjointGemm, StateGemm, plan_kernel

SHAPES = {"small": (20, 4, 8, 16), "medium": (100, 16, 32, 64), "large": (100, 32, 64, 128)}  # T, B, n_x, n_h
DTYPES = [np.float32, np.float64]
BACKENDS = ("numpy", "numba")
NEAREST_MODULE = {"rnn": "rnn", "rnn_relu": "rnn_relu", "gru_simple": "gru_torch", "gru": "gru_torch",
                  "gru_torch": "gru_torch", "lstm": "lstm", "mgu": "gru_torch", "lstm_peephole": "lstm",
                  "min_gru": "gru_torch", "min_lstm": "lstm", "indrnn": "rnn"}
"""The torch module each cell is timed against: its own, else the nearest one (a benchmark's choice)."""
SCAN_SHAPE = (4096, 8, 64, 64)  # T, B, n_x, n_h: the parallel scan against the step loop
TARGETS: dict[str, list[tuple[str, str, float]]] = {
    "small": [("nb/to", "<=", 0.2), ("nb/np", "<=", 0.2)],
    "medium": [("nb/to", "<=", 0.5)],
    "large": [("nb/np", "<=", 1.05), ("nbfl", ">=", 0.85)],
}
"""The acceptance targets of the Numba backend on forward+backward (issue 14), per shape:
(column, comparison, threshold); nb/np ≤ 0.2 is "at least 5× faster than NumPy"."""


@dataclass(frozen=True)
class Gemm:
    """One matrix product (m, k) × (k, n), done ``count`` times (``count`` = T:
    once per step, inside the time loop); ``transposed``: the (m, k) operand
    is the transpose of a C-contiguous (k, m) array, as a weight gradient's δz."""

    m: int
    k: int
    n: int
    count: int = 1
    transposed: bool = False


def gemm_floor(cell: derive.Cell, T: int, B: int, n_x: int, n_h: int) -> tuple[list[Gemm], list[Gemm]]:
    """The forward and backward matrix products of ``cell`` at this shape,
    from its structure (the NumPy floor)."""
    input_nodes, per_part = 0, {}
    for node in cell.nodes:
        if isinstance(node, Affine):
            for part in node.parts:
                if cell.vectors[part].role == "input":
                    input_nodes += 1
                else:
                    per_part[part] = per_part.get(part, 0) + 1
    G = input_nodes
    forward = [Gemm(T * B, n_x, G * n_h)] + [Gemm(B, n_h, k * n_h, T) for k in per_part.values()]
    backward = [Gemm(B, k * n_h, n_h, T) for k in per_part.values()]  # δ part(t) = W_pᵀ δz(t), each step
    backward += [Gemm(T * B, G * n_h, n_x)]  # dxs, all steps at once
    backward += [Gemm(G * n_h, T * B, n_x)] + [Gemm(k * n_h, T * B, n_h) for k in per_part.values()]  # dW
    return forward, backward


def plan_gemms(cell: derive.Cell, T: int, B: int, n_x: int, n_h: int) -> tuple[list[Gemm], list[Gemm]]:
    """The forward and backward matrix products of ``cell``'s generated Numba
    kernel at this shape, read from its kernel plan, in the kernel's order."""
    plan = plan_kernel(cell)
    part_of = {c.name: c.part for c in plan.columns}

    def width(part: str) -> int:
        return n_x if cell.vectors[part].role == "input" else n_h

    forward = [Gemm(T * B, n_x, n_h) for _ in plan.input_projection.blocks]  # before the loop
    for st in plan.forward:
        if isinstance(st, StateGemm):  # (B, n_h) state × each block's columns, added into that block of Z
            forward += [Gemm(B, n_h, n_h, T) for _ in st.weights.nodes]
        elif isinstance(st, NodeGemm):  # a node's value × a column block, per weight
            forward += [Gemm(B, width(w.part), n_h, T) for w in st.weights]
    backward = []
    for st in plan.backward:
        for g in getattr(st, "gemms", ()):
            if isinstance(g, StateAdjointGemm):  # each block's δz × its column block, added up
                backward += [Gemm(B, n_h, n_h, T) for _ in g.weights.nodes]
            elif isinstance(g, AdjointGemm):  # δz × one column block
                backward.append(Gemm(B, n_h, width(part_of[g.weight]), T))
    if plan.input_grad is not None:
        backward += [Gemm(T * B, n_h, n_x) for _ in plan.input_grad.blocks]
    for g in plan.weight_grads:
        backward += [Gemm(n_h, T * B, width(part), 1, transposed=True) for part in g.parts]
    return forward, backward  # the bias gradients: summed after the loop (block_sums), not a product


def compare_floors(cells: list[str], shape: tuple[int, int, int, int]) -> list[str]:
    """What differs between the plan's products (the Numba floor) and the
    structural ones (the NumPy floor) for each cell: the multiply-adds of
    the per-step products (the Numba kernel does one per block where the
    NumPy kernel stacks a part's blocks into one) and of the others."""
    lines = []
    for name in cells:
        cell = derive.cell(name)
        structural, planned = gemm_floor(cell, *shape), plan_gemms(cell, *shape)
        for phase, a, b in (("forward", structural[0], planned[0]), ("backward", structural[1], planned[1])):
            step_a = sum(g.m * g.k * g.n * g.count for g in a if g.count > 1)
            step_b = sum(g.m * g.k * g.n * g.count for g in b if g.count > 1)
            flops_a = sum(g.m * g.k * g.n for g in a if g.count == 1)
            flops_b = sum(g.m * g.k * g.n for g in b if g.count == 1)
            diffs = []
            if step_a != step_b:
                diffs.append(f"per-step products {step_a} (structure) against {step_b} (plan) multiply-adds")
            if flops_a != flops_b:
                diffs.append(f"all-steps products {flops_a} against {flops_b} multiply-adds")
            if diffs:
                lines.append(f"  {name} {phase}: " + "; ".join(diffs))
    return lines


def gemm_runner(gemms: list[Gemm], dtype: type, rng: np.random.Generator) -> Callable[[], None]:
    """A callable doing exactly ``gemms`` into preallocated outputs with NumPy."""
    operands = [(rng.standard_normal((g.m, g.k)).astype(dtype), rng.standard_normal((g.k, g.n)).astype(dtype),
                 np.empty((g.m, g.n), dtype), g.count) for g in gemms]

    def run() -> None:
        for a, b, out, count in operands:
            for _ in range(count):
                np.matmul(a, b, out=out)

    return run


def _numba_floor() -> Callable[..., None]:
    """The compiled floor (compiled once per dtype and process, not cached on
    disk: a cache entry names the module that wrote it, and the tests load
    this file under another name than ``__main__``), over five typed lists
    of (a, b, out): before the loop, each forward step, each backward step,
    after it, and after it with a transposed (Fortran-ordered) first operand.
    The products of a step: ``np.dot(a, b, out)``; the ones over all steps:
    ``gemm_in_pieces``, in the pieces the kernels cut them into."""
    import numba

    from derive.runtime_numba import gemm_in_pieces

    @numba.njit(error_model="numpy")
    def floor(T, before, forward, backward, after, after_t):  # noqa: ANN001, ANN202 - compiled by Numba
        for a, b, o in before:
            gemm_in_pieces(a, b, o, 0, False, 0.0)
        for _ in range(T):
            for a, b, o in forward:
                np.dot(a, b, o)
        for _ in range(T):
            for a, b, o in backward:
                np.dot(a, b, o)
        for a, b, o in after:
            gemm_in_pieces(a, b, o, 0, False, 0.0)
        for a, b, o in after_t:
            gemm_in_pieces(a.T, b, o, 0, True, 0.0)

    return floor


_FLOOR: list[Callable[..., None]] = []


def numba_gemm_runner(forward: list[Gemm], backward: list[Gemm], dtype: type,
                      rng: np.random.Generator) -> Callable[[], None]:
    """A callable doing exactly ``forward`` then ``backward`` inside one
    compiled function (into preallocated outputs, see :func:`_numba_floor`): the products
    of count T (per step) in a loop over t, forward and backward, in order;
    the others before (forward) or after (backward) it."""
    from numba import typed, types

    if not _FLOOR:
        _FLOOR.append(_numba_floor())
    steps = {g.count for g in forward + backward if g.count > 1}
    if len(steps) > 1:
        raise ValueError(f"gemms: expected one per-step count (T), got {sorted(steps)}")
    T = steps.pop() if steps else 1
    dt = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    c, f = types.Array(dt, 2, "C"), types.Array(dt, 2, "F")

    def group(gemms: list[Gemm], layout: types.Array) -> typed.List:
        triples = typed.List.empty_list(types.Tuple((layout, c, c)))
        for g in gemms:
            a = rng.standard_normal((g.k, g.m)).astype(dtype).T if g.transposed else rng.standard_normal((g.m, g.k)).astype(dtype)
            triples.append((a, rng.standard_normal((g.k, g.n)).astype(dtype), np.empty((g.m, g.n), dtype)))
        return triples

    lists = (group([g for g in forward if g.count == 1], c), group([g for g in forward if g.count > 1], c),
             group([g for g in backward if g.count > 1], c),
             group([g for g in backward if g.count == 1 and not g.transposed], c),
             group([g for g in backward if g.count == 1 and g.transposed], f))
    return functools.partial(_FLOOR[0], T, *lists)  # .args: what it passes, for the tests


def calibrated(fn: Callable[[], object], min_seconds: float) -> Callable[[], float]:
    """A timer of ``fn`` that loops it enough times to last ``min_seconds``;
    returns seconds per call."""
    fn()  # warm up (allocations, torch's lazy init, Numba's compile or cache load)
    loops, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
        loops *= 2

    def sample() -> float:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        return (time.perf_counter() - start) / loops

    return sample


def nearest_module(name: str) -> str:
    """The cell whose torch module ``name`` is timed against."""
    return NEAREST_MODULE.get(name, "lstm" if len(derive.cell(name).states) > 1 else "gru_torch")


def cases(name: str, T: int, B: int, n_x: int, n_h: int, dtype: type,
          backends: tuple[str, ...] = BACKENDS) -> dict[str, Callable[[], object]]:
    """The callables to time for one cell, shape and dtype: torch's module,
    and for each of ``backends`` its kernel and its GEMM floor (NumPy: also
    its per-call cost), forward and forward+backward."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((T, B, n_x)).astype(dtype)
    dys = rng.standard_normal((T, B, n_h)).astype(dtype)
    fns: dict[str, Callable[[], object]] = {}

    def fb(kernel: object, params: dict[str, np.ndarray], xs: np.ndarray, dys: np.ndarray) -> Callable[[], None]:
        def run() -> None:
            _, cache = kernel.forward(params, xs)  # type: ignore[attr-defined]
            kernel.backward(cache, dys)  # type: ignore[attr-defined]

        return run

    cell = derive.cell(name)
    if "numpy" in backends:
        kernel = kernels.load(name)
        params = kernel.init_params(n_x, n_h, seed=0, dtype=dtype)
        forward, backward = gemm_floor(cell, T, B, n_x, n_h)
        # the same T with B = n_x = n_h = 1: the same calls on arrays of one
        # element, so only the interpreter's and NumPy's per-call cost remains
        tiny = kernel.init_params(1, 1, seed=0, dtype=dtype)
        fns |= {
            "numpy fwd": lambda: kernel.forward(params, xs),
            "npfl fwd": gemm_runner(forward, dtype, rng),
            "numpy f+b": fb(kernel, params, xs, dys),
            "npfl f+b": gemm_runner(forward + backward, dtype, rng),
            "calls f+b": fb(kernel, tiny, np.ones((T, 1, 1), dtype), np.ones((T, 1, 1), dtype)),
        }
    if "numba" in backends:
        fast = kernels.load(name, backend="numba")
        fast_params = fast.init_params(n_x, n_h, seed=0, dtype=dtype)
        forward, backward = plan_gemms(cell, T, B, n_x, n_h)
        fns |= {
            "numba fwd": lambda: fast.forward(fast_params, xs),
            "nbfl fwd": numba_gemm_runner(forward, [], dtype, rng),
            "numba f+b": fb(fast, fast_params, xs, dys),
            "nbfl f+b": numba_gemm_runner(forward, backward, dtype, rng),
        }

    nearest = nearest_module(name)
    module = to_torch(nearest, kernels.load(nearest).init_params(n_x, n_h, seed=0, dtype=dtype))
    xs_t, dys_t = torch.from_numpy(xs), torch.from_numpy(dys)

    def torch_fwd() -> None:
        with torch.no_grad():
            module(xs_t)

    def torch_fb() -> None:
        x = xs_t.detach().requires_grad_(True)
        module.zero_grad(set_to_none=True)
        module(x)[0].backward(dys_t)

    fns |= {"torch fwd": torch_fwd, "torch f+b": torch_fb}
    return fns


def ratios(samples: dict[str, list[float]], part: str) -> dict[str, float]:
    """The paired ratios of one row for ``part`` ("fwd" or "f+b"), those whose
    times were measured."""
    pairs = {"np/to": ("numpy", "torch"), "nb/to": ("numba", "torch"), "nb/np": ("numba", "numpy"),
             "npfl": ("npfl", "numpy"), "calls": ("calls", "numpy"), "nbfl": ("nbfl", "numba")}
    return {k: paired(samples, f"{a} {part}", f"{b} {part}") for k, (a, b) in pairs.items()
            if f"{a} {part}" in samples and f"{b} {part}" in samples}


_FB_COLUMNS = ("np/to", "nb/to", "nb/np", "npfl", "calls", "bound", "nbfl")
_FWD_COLUMNS = ("np/to", "nb/to", "nb/np", "npfl", "nbfl")


def _header(columns: tuple[str, ...]) -> str:
    return (f"{'cell':<13} {'shape':<6} {'dtype':<7}|{'numpy':>9} {'numba':>9} {'torch':>9} |"
            + "".join(f"{c:>6}" for c in columns))


def _row(label: str, samples: dict[str, list[float]], part: str, columns: tuple[str, ...]) -> str:
    times = "".join(f"{statistics.median(samples[f'{b} {part}']) * 1e3:>9.3f} " if f"{b} {part}" in samples
                    else f"{'-':>9} " for b in ("numpy", "numba", "torch"))
    r = ratios(samples, part)
    if part == "f+b" and "calls f+b" in samples:
        r["bound"] = _bound(samples)
    cells = "".join(f"{r[c]:>6.2f}" if isinstance(r.get(c), float) else f"{r.get(c, '-'):>6}" for c in columns)
    return f"{label}|{times[:-1]} |{cells}"


def kernel_tables(cells: list[str], shapes: list[str], dtypes: list[type], backends: tuple[str, ...],
                  repeat: int, min_seconds: float) -> list[tuple[str, str, str, dict[str, float]]]:
    """Time every cell, shape and dtype; print the forward+backward table row
    by row, then the forward table. Returns (cell, shape, dtype, f+b ratios)
    per row, for :func:`check_targets`."""
    print(_header(_FB_COLUMNS) + "   forward+backward")
    print("-" * len(_header(_FB_COLUMNS)))
    fwd_rows, results = [], []
    for shape in shapes:
        T, B, n_x, n_h = SHAPES[shape]
        for dtype in dtypes:
            for name in cells:
                samples = measure(cases(name, T, B, n_x, n_h, dtype, backends), repeat, min_seconds)
                dname = np.dtype(dtype).name
                label = f"{name:<13} {shape:<6} {dname:<7}"
                print(_row(label, samples, "f+b", _FB_COLUMNS), flush=True)
                fwd_rows.append(_row(label, samples, "fwd", _FWD_COLUMNS))
                results.append((name, shape, dname, ratios(samples, "f+b")))
    print(f"\n{_header(_FWD_COLUMNS)}   forward")
    print("-" * len(_header(_FWD_COLUMNS)))
    print("\n".join(fwd_rows))
    stand_ins = ", ".join(f"{c} → {nearest_module(c)}" for c in cells if nearest_module(c) != c)
    print("\nshapes (T, B, n_x, n_h): " + ", ".join(f"{s} {SHAPES[s]}" for s in shapes)
          + "\ntimes in ms (median); ratios: medians over rounds of the two times measured in the same round;"
          "\nnp/to = numpy/torch, nb/to = numba/torch, nb/np = numba/numpy"
          + (f" (torch module of another cell: {stand_ins})" if stand_ins else "") + ";"
          "\nnpfl = the cell's GEMMs with NumPy / numpy kernel; calls = numpy kernel at B = n_x = n_h = 1 / numpy kernel;"
          "\nbound = npfl / (numpy − calls): the NumPy floor fraction if every call were free;"
          "\nnbfl = the Numba kernel's own GEMMs in one njit function / numba kernel")
    return results


def check_targets(results: list[tuple[str, str, str, dict[str, float]]]) -> list[str]:
    """Every row that misses one of :data:`TARGETS`, with its figure."""
    misses = []
    for name, shape, dtype, r in results:
        for column, op, limit in TARGETS.get(shape, []):
            if column not in r:
                continue
            ok = r[column] <= limit if op == "<=" else r[column] >= limit
            if not ok:
                misses.append(f"  {name:<13} {shape:<6} {dtype:<7} {column} = {r[column]:.3f} (target {op} {limit})")
    return misses


_COMPILE_SCRIPT = r"""
import json, sys, time
import numpy as np
start = time.perf_counter()
import derive.kernels as kernels
derive_import = time.perf_counter() - start
start = time.perf_counter()
import numba
numba_import = time.perf_counter() - start
out = {"derive import": derive_import, "numba import": numba_import, "runs": []}
for name in sys.argv[1].split(","):
    for dtype in sys.argv[2].split(","):
        start = time.perf_counter()
        k = kernels.load(name, backend="numba")
        loaded = time.perf_counter()
        params = k.init_params(3, 4, seed=0, dtype=dtype)
        ys, cache = k.forward(params, np.ones((2, 2, 3), dtype))
        k.backward(cache, np.ones(ys.shape, dtype))
        out["runs"].append([name, dtype, time.perf_counter() - start, loaded - start])
print(json.dumps(out))
"""


def _run_fresh(cells: list[str], dtypes: list[str], cache_dir: str) -> dict[str, object]:
    """Run :data:`_COMPILE_SCRIPT` in a fresh Python on ``cache_dir`` as Numba's cache."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir,
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, ",".join(cells), ",".join(dtypes)],
                          capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the compile-time subprocess failed (exit {done.returncode}): {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compile_times(cells: list[str], dtypes: list[type]) -> None:
    """Print the cold compile time of every Numba kernel in every dtype (a
    fresh process, an empty temporary NUMBA_CACHE_DIR), then the cached import
    and first call of the first two kernels in a later fresh process."""
    names = [np.dtype(d).name for d in dtypes]
    with tempfile.TemporaryDirectory(prefix="derive-numba-cache-") as cache_dir:
        cold = _run_fresh(cells, names, cache_dir)
        warm = _run_fresh(cells[:2], names[:1], cache_dir)
    print(f"\nNumba compile, cold (fresh process, empty NUMBA_CACHE_DIR; load + init_params + forward + backward"
          f" at T=2, B=2, n_x=3, n_h=4; the first also compiles derive.runtime_numba):"
          f"\n  import numba {cold['numba import']:.2f} s, import derive.kernels {cold['derive import']:.2f} s")
    by_cell: dict[str, list[str]] = {}
    for name, dtype, seconds, _ in cold["runs"]:
        by_cell.setdefault(name, []).append(f"{dtype} {seconds:5.2f} s")
    for name, entries in by_cell.items():
        print(f"  {name:<13} " + "   ".join(entries))
    total = sum(s for _, _, s, _ in cold["runs"])
    print(f"  total {total:.1f} s for {len(cold['runs'])} kernels and dtypes")
    (first, dtype, t1, load), *more = warm["runs"]
    print(f"Numba cached (a later fresh process on that cache): import derive.kernels {warm['derive import']:.3f} s;"
          f" import numba {warm['numba import']:.3f} s; {first} {dtype} load {load:.3f} s + first call {t1 - load:.3f} s;"
          f" all four = {warm['derive import'] + warm['numba import'] + t1:.3f} s"
          + "".join(f"; then {n} {d} {s * 1e3:.1f} ms" for n, d, s, _ in more))


def scan_cases(name: str, T: int, B: int, n_x: int, n_h: int, dtype: type) -> dict[str, Callable[[], object]]:
    """The step-loop kernel and the parallel-scan kernel of one linear-scan
    cell, forward and forward+backward, on the same inputs."""
    rng = np.random.default_rng(0)
    loop, fast = kernels.load(name), scan.load(name)
    params = loop.init_params(n_x, n_h, seed=0, dtype=dtype)
    xs = rng.standard_normal((T, B, n_x)).astype(dtype)
    dys = rng.standard_normal((T, B, n_h)).astype(dtype)

    def fb(kernel: object) -> Callable[[], None]:
        def run() -> None:
            _, cache = kernel.forward(params, xs)  # type: ignore[attr-defined]
            kernel.backward(cache, dys)  # type: ignore[attr-defined]

        return run

    return {
        "loop fwd": lambda: loop.forward(params, xs),
        "scan fwd": lambda: fast.forward(params, xs),
        "loop f+b": fb(loop),
        "scan f+b": fb(fast),
    }


def scan_table(cells: list[str], repeat: int, min_seconds: float) -> None:
    """Print the scan/loop time ratio of every linear-scan cell at :data:`SCAN_SHAPE`."""
    T, B, n_x, n_h = SCAN_SHAPE
    chosen = [c for c in cells if scan.has_scan(c)]
    print(f"\nparallel scan against the step loop (T = {T}, B = {B}, n_x = {n_x}, n_h = {n_h}, float64)")
    header = f"{'cell':<11}|{'loop fwd':>10} {'scan fwd':>10} {'scan/loop':>10} |{'loop f+b':>10} {'scan f+b':>10} {'scan/loop':>10}"
    print(header)
    print("-" * len(header))
    for name in chosen:
        samples = measure(scan_cases(name, T, B, n_x, n_h, np.float64), repeat, min_seconds)
        t = {k: statistics.median(v) for k, v in samples.items()}
        print(f"{name:<11}|{_ms(t['loop fwd'], 10)} {_ms(t['scan fwd'], 10)} {paired(samples, 'scan fwd', 'loop fwd'):>10.3f} |"
              f"{_ms(t['loop f+b'], 10)} {_ms(t['scan f+b'], 10)} {paired(samples, 'scan f+b', 'loop f+b'):>10.3f}",
              flush=True)
    if not chosen:
        print("(none of the cells is a linear scan)")
    print("times in ms (median); scan/loop < 1: the scan is faster")


def measure(fns: dict[str, Callable[[], object]], repeat: int, min_seconds: float) -> dict[str, list[float]]:
    """Seconds per call of each callable in every round. The callables are
    interleaved, in alternating order from one round to the next, so that a
    slow spell of the (shared, noisy) machine hits them all alike."""
    timers = {k: calibrated(f, min_seconds) for k, f in fns.items()}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for round_ in range(repeat):
        for k in (list(timers) if round_ % 2 == 0 else list(timers)[::-1]):
            samples[k].append(timers[k]())
    return samples


def paired(samples: dict[str, list[float]], num: str, den: str) -> float:
    """The median over rounds of num/den measured in the same round: pairs
    taken moments apart, steadier than a ratio of two medians."""
    return statistics.median(a / b for a, b in zip(samples[num], samples[den]))


def time_derive_build() -> str:
    """Wall time of ``derive build`` into a scratch root (the checkout is not touched)."""
    exe = shutil.which("derive")
    command = [exe, "build"] if exe else [sys.executable, "-m", "derive.cli", "build"]
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        done = subprocess.run([*command, "--root", root], capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed (exit {done.returncode}): {last}"
    return f"{elapsed:.2f} s ({len(done.stdout.splitlines())} files written)"


def describe_environment(threads: int) -> list[str]:
    versions = f"numpy {np.__version__}, torch {torch.__version__}"
    if importlib.util.find_spec("numba") is not None:
        import numba

        versions += f", numba {numba.__version__}"
    lines = [f"{versions}, {os.cpu_count()} CPUs, threads = {threads}"]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "NUMBA_CACHE_DIR"):
        lines.append(f"  {var} = {os.environ.get(var, '(unset)')}")
    for lib in threadpool_info():
        lines.append(
            f"  {lib['user_api']}: {lib['internal_api']} {lib.get('version') or ''} "
            f"{lib.get('architecture') or ''} num_threads={lib['num_threads']} ({os.path.basename(lib['filepath'])})"
        )
    lines.append(f"  torch: {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    return lines


def available_backends(requested: list[str]) -> tuple[str, ...]:
    """The requested backends that can run; prints why one is skipped."""
    chosen = []
    for backend in requested:
        try:
            kernels.check_backend(backend)
        except kernels.BackendUnavailableError as e:
            print(f"{backend}: skipped ({e})")
            continue
        if backend == "numba" and importlib.util.find_spec("scipy") is None:
            print("numba: skipped (Numba's np.dot, which the Numba kernels call, needs SciPy: pip install scipy)")
            continue
        chosen.append(backend)
    return tuple(chosen)


def _choices(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    """A comma-separated list of ``allowed`` values, for argparse."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    wrong = [v for v in values if v not in allowed]
    if wrong or not values:
        raise argparse.ArgumentTypeError(f"expected {what} among {', '.join(allowed)} (comma-separated), got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="The module docstring explains every column: python -m pydoc benchmarks/kernels.py")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small shape (unless --shapes), float64, 3 rounds of short samples,"
                             " no derive build or compile-time measurement")
    parser.add_argument("--threads", type=int, default=1, help="threads for both BLAS libraries and torch (default 1)")
    parser.add_argument("--repeat", type=int, default=None, help="interleaved rounds; medians are reported (default 11, quick 3)")
    parser.add_argument("--cells", nargs="+", default=list(derive.NAMES), choices=derive.NAMES)
    parser.add_argument("--backends", type=lambda s: _choices(s, BACKENDS, "backends"), default=list(BACKENDS),
                        help="kernel backends to time, comma-separated (default numpy,numba; numba is skipped,"
                             " with the reason, when Numba is not installed)")
    parser.add_argument("--shapes", type=lambda s: _choices(s, list(SHAPES), "shapes"), default=None,
                        help="comma-separated among " + ", ".join(f"{k} {v}" for k, v in SHAPES.items())
                             + " (T, B, n_x, n_h); default all, quick small")
    parser.add_argument("--scan-only", action="store_true",
                        help="only the parallel-scan table (scan/loop ratio of the linear-scan cells at T = 4096)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 11)
    shapes = args.shapes or (["small"] if args.quick else list(SHAPES))
    dtypes = [np.float64] if args.quick else DTYPES
    min_seconds = 0.005 if args.quick else 0.05
    backends = available_backends(args.backends)

    torch.set_num_threads(args.threads)
    if "numba" in backends:
        import scipy.linalg.cython_blas  # noqa: F401 - loads the OpenBLAS Numba's np.dot calls, so that the limit below applies to it
    with threadpool_limits(limits=args.threads, user_api="blas"):
        print("\n".join(describe_environment(args.threads)))
        if args.scan_only:
            scan_table(args.cells, repeat, min_seconds)
            return 0
        if not args.quick:
            print(f"derive build: {time_derive_build()}")
        if "numba" in backends:
            diffs = compare_floors(args.cells, SHAPES[shapes[-1]])
            print("the Numba floor's products (kernel plan) against the NumPy floor's (cell structure): "
                  + ("\n" + "\n".join(diffs) if diffs else "the same multiply-adds for every cell, per step and"
                     " in the all-steps products (the plan does one GEMM per block)"))
        print()
        results = kernel_tables(args.cells, shapes, dtypes, backends, repeat, min_seconds)
        if "numba" in backends:
            misses = check_targets(results)
            print("\ntargets (forward+backward): small nb/to ≤ 0.2 and nb/np ≤ 0.2 (5× NumPy); medium nb/to ≤ 0.5;"
                  " large nb/np ≤ 1.05 and nbfl ≥ 0.85")
            print("missed:\n" + "\n".join(misses) if misses else "missed: none")
            if not args.quick:
                compile_times(args.cells, DTYPES)
        libs = [f"{os.path.basename(lib['filepath'])}={lib['num_threads']}" for lib in threadpool_info() if lib["user_api"] == "blas"]
        print(f"\nBLAS threads at the end: {', '.join(libs)}")
        scan_table(args.cells, repeat, min_seconds)
    return 0


def _bound(samples: dict[str, list[float]]) -> str:
    """npfl / (numpy − calls), paired by round, or "-" where calls are most
    of the kernel time and the difference is noise (the small shape)."""
    kernel, calls, gemm = samples["numpy f+b"], samples["calls f+b"], samples["npfl f+b"]
    if statistics.median(kernel) - statistics.median(calls) <= 0.5 * statistics.median(kernel):
        return "-"
    return f"{statistics.median(g / (k - c) for g, k, c in zip(gemm, kernel, calls)):.2f}"


def _ms(seconds: float, width: int = 11) -> str:
    return f"{seconds * 1e3:>{width}.3f}"


if __name__ == "__main__":
    sys.exit(main())
