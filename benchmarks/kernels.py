"""Time the generated NumPy kernels against PyTorch's CPU modules.

For each cell, shape and dtype: the forward and the forward+backward of the
generated kernel and of the nearest PyTorch module (``gru_simple`` and
``gru`` have none; ``nn.GRU`` stands in), and the *GEMM floor*: the matrix
products the cell needs, timed alone with NumPy in the same run. The table
gives median times over ``--repeat`` interleaved rounds, the ratio
kernel/torch and the fraction of the floor (floor time / kernel time: 1.0
would mean the kernel spends all its time in unavoidable GEMMs). Each ratio
is the median over rounds of the two times measured in the same round:
this shared 2-core machine has slow spells of a few seconds, which a ratio
of two medians taken at different moments would catch unevenly.

Two more columns say where the rest goes. ``calls``: the same kernel on
the same T with B = n_x = n_h = 1, whose arrays hold one element, so that
only the per-call cost of Python and NumPy remains, as a fraction of the
kernel time. ``bound``: the floor fraction the kernel would reach if every
call were free, floor / (kernel − calls): what separates it from 1.0 is the
element-wise passes over the (B, n_h) arrays that the equations need ("-"
where the calls are most of the time and the difference is noise).

The products come from the cell's structure (``cell.nodes``): every input
part of every affine node goes into one GEMM over all time steps,
(T·B, n_x) × (n_x, G·n_h); each other part vector p (c(t−1), Gr ⊙ c(t−1), …)
costs one GEMM per step, (B, n_h) × (n_h, k_p·n_h), k_p the number of
affine nodes acting on p. Backward: the transposed GEMM per step and part,
one GEMM for dxs, and one weight-gradient GEMM per part over the stacked
steps.

Both sides run with the same thread count (``--threads``, default 1):
threadpoolctl limits NumPy's BLAS, ``torch.set_num_threads`` limits torch.
One thread is the default because the per-step products are small (B × n_h
by n_h × k·n_h), where a second thread mostly adds synchronisation, and a
single thread makes repeated runs stable on a shared 2-core machine.

Run::

    python benchmarks/kernels.py              # full run
    python benchmarks/kernels.py --quick      # smoke run, a few seconds
    python benchmarks/kernels.py --scan-only  # the parallel scan against the step loop

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
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import derive
from derive import kernels
from derive.kernels import scan
from derive.graph import Affine
from derive.interop.torch import to_torch

SHAPES = [(100, 32, 64, 128), (20, 4, 8, 16)]  # T, B, n_x, n_h
DTYPES = [np.float32, np.float64]
NEAREST_MODULE = {"rnn": "rnn", "gru_simple": "gru_torch", "gru": "gru_torch", "gru_torch": "gru_torch", "lstm": "lstm",
                  "mgu": "gru_torch", "lstm_peephole": "lstm", "min_gru": "gru_torch", "min_lstm": "lstm", "indrnn": "rnn"}
"""The torch module each cell is timed against: its own, else the nearest one (a benchmark's choice)."""
SCAN_SHAPE = (4096, 8, 64, 64)  # T, B, n_x, n_h: the parallel scan against the step loop


@dataclass(frozen=True)
class Gemm:
    """One matrix product (m, k) × (k, n), done ``count`` times."""

    m: int
    k: int
    n: int
    count: int = 1


def gemm_floor(cell: derive.Cell, T: int, B: int, n_x: int, n_h: int) -> tuple[list[Gemm], list[Gemm]]:
    """The forward and backward matrix products of ``cell`` at this shape."""
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


def gemm_runner(gemms: list[Gemm], dtype: type, rng: np.random.Generator) -> Callable[[], None]:
    """A callable doing exactly ``gemms`` into preallocated outputs."""
    operands = [(rng.standard_normal((g.m, g.k)).astype(dtype), rng.standard_normal((g.k, g.n)).astype(dtype),
                 np.empty((g.m, g.n), dtype), g.count) for g in gemms]

    def run() -> None:
        for a, b, out, count in operands:
            for _ in range(count):
                np.matmul(a, b, out=out)

    return run


def calibrated(fn: Callable[[], object], min_seconds: float) -> Callable[[], float]:
    """A timer of ``fn`` that loops it enough times to last ``min_seconds``;
    returns seconds per call."""
    fn()  # warm up (allocations, torch's lazy init)
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


def cases(name: str, T: int, B: int, n_x: int, n_h: int, dtype: type) -> dict[str, Callable[[], object]]:
    """The callables to time for one cell, shape and dtype."""
    rng = np.random.default_rng(0)
    kernel = kernels.load(name)
    params = kernel.init_params(n_x, n_h, seed=0, dtype=dtype)
    xs = rng.standard_normal((T, B, n_x)).astype(dtype)
    dys = rng.standard_normal((T, B, n_h)).astype(dtype)

    def kernel_fb() -> None:
        _, cache = kernel.forward(params, xs)
        kernel.backward(cache, dys)

    # the same T with B = n_x = n_h = 1: the same calls on arrays of one
    # element, so only the interpreter's and NumPy's per-call cost remains
    tiny_params = kernel.init_params(1, 1, seed=0, dtype=dtype)
    tiny_xs, tiny_dys = np.ones((T, 1, 1), dtype), np.ones((T, 1, 1), dtype)

    def kernel_calls() -> None:
        _, cache = kernel.forward(tiny_params, tiny_xs)
        kernel.backward(cache, tiny_dys)

    nearest = NEAREST_MODULE.get(name, "lstm" if len(derive.cell(name).states) > 1 else "gru_torch")
    module = to_torch(nearest, kernels.load(nearest).init_params(n_x, n_h, seed=0, dtype=dtype))
    xs_t, dys_t = torch.from_numpy(xs), torch.from_numpy(dys)

    def torch_fwd() -> None:
        with torch.no_grad():
            module(xs_t)

    def torch_fb() -> None:
        x = xs_t.detach().requires_grad_(True)
        module.zero_grad(set_to_none=True)
        module(x)[0].backward(dys_t)

    forward, backward = gemm_floor(derive.cell(name), T, B, n_x, n_h)
    return {
        "kernel fwd": lambda: kernel.forward(params, xs),
        "torch fwd": torch_fwd,
        "gemm fwd": gemm_runner(forward, dtype, rng),
        "kernel f+b": kernel_fb,
        "torch f+b": torch_fb,
        "gemm f+b": gemm_runner(forward + backward, dtype, rng),
        "calls f+b": kernel_calls,
    }


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
    lines = [f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, threads = {threads}"]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
        lines.append(f"  {var} = {os.environ.get(var, '(unset)')}")
    for lib in threadpool_info():
        lines.append(
            f"  {lib['user_api']}: {lib['internal_api']} {lib.get('version') or ''} "
            f"{lib.get('architecture') or ''} num_threads={lib['num_threads']} ({os.path.basename(lib['filepath'])})"
        )
    lines.append(f"  torch: {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shape, float64, 3 rounds of short samples")
    parser.add_argument("--threads", type=int, default=1, help="threads for both NumPy's BLAS and torch (default 1)")
    parser.add_argument("--repeat", type=int, default=None, help="interleaved rounds; medians are reported (default 11, quick 3)")
    parser.add_argument("--cells", nargs="+", default=list(derive.NAMES), choices=derive.NAMES)
    parser.add_argument("--scan-only", action="store_true",
                        help="only the parallel-scan table (scan/loop ratio of the linear-scan cells at T = 4096)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 11)
    shapes, dtypes = (SHAPES[1:], [np.float64]) if args.quick else (SHAPES, DTYPES)
    min_seconds = 0.01 if args.quick else 0.05

    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        print("\n".join(describe_environment(args.threads)))
        if args.scan_only:
            scan_table(args.cells, repeat, min_seconds)
            return 0
        print(f"derive build: {time_derive_build()}\n")
        header = (
            f"{'cell':<11} {'T':>4} {'B':>3} {'n_x':>4} {'n_h':>4} {'dtype':<8}|"
            f"{'kernel fwd':>11} {'torch fwd':>10} {'ratio':>6} {'floor':>6} |"
            f"{'kernel f+b':>11} {'torch f+b':>10} {'ratio':>6} {'floor':>6} {'calls':>6} {'bound':>6}"
        )
        print(header)
        print("-" * len(header))
        for T, B, n_x, n_h in shapes:
            for dtype in dtypes:
                for name in args.cells:
                    samples = measure(cases(name, T, B, n_x, n_h, dtype), repeat, min_seconds)
                    t = {k: statistics.median(v) for k, v in samples.items()}
                    print(
                        f"{name:<11} {T:>4} {B:>3} {n_x:>4} {n_h:>4} {np.dtype(dtype).name:<8}|"
                        f"{_ms(t['kernel fwd'])} {_ms(t['torch fwd'], 10)} {paired(samples, 'kernel fwd', 'torch fwd'):>6.2f}"
                        f" {paired(samples, 'gemm fwd', 'kernel fwd'):>6.2f} |"
                        f"{_ms(t['kernel f+b'])} {_ms(t['torch f+b'], 10)} {paired(samples, 'kernel f+b', 'torch f+b'):>6.2f}"
                        f" {paired(samples, 'gemm f+b', 'kernel f+b'):>6.2f}"
                        f" {paired(samples, 'calls f+b', 'kernel f+b'):>6.2f} {_bound(samples):>6}",
                        flush=True,
                    )
        print("\ntimes in ms (median); ratios: medians over rounds of the two times measured in the same round;"
              "\nratio = kernel / torch (gru_simple, gru: against nn.GRU);"
              " floor = time of the cell's GEMMs alone / kernel time;\ncalls = time of the same kernel"
              " at B = n_x = n_h = 1 (per-call cost only) / kernel time;"
              " bound = floor / (kernel - calls), the floor fraction\nif every call were free:"
              " what is left is the GEMMs and the element-wise passes the equations need")
        scan_table(args.cells, repeat, min_seconds)
    return 0


def _bound(samples: dict[str, list[float]]) -> str:
    """floor / (kernel − calls), paired by round, or "-" where calls are most
    of the kernel time and the difference is noise (the small shape)."""
    kernel, calls, gemm = samples["kernel f+b"], samples["calls f+b"], samples["gemm f+b"]
    if statistics.median(kernel) - statistics.median(calls) <= 0.5 * statistics.median(kernel):
        return "-"
    return f"{statistics.median(g / (k - c) for g, k, c in zip(gemm, kernel, calls)):.2f}"


def _ms(seconds: float, width: int = 11) -> str:
    return f"{seconds * 1e3:>{width}.3f}"


if __name__ == "__main__":
    sys.exit(main())
