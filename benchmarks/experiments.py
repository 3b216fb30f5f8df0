"""Where a training step of the experiments spends its time, on each kernel backend.

For each cell and sequence length, at the experiments' shapes (the batch and
hidden size of ``derive experiment``'s full training: B = 64, n_x = 2, n_h of
the ~1200-parameter model), training runs of :func:`derive.experiments.train.train`
are timed whole and, within them, the time spent in the kernel's ``forward``
and ``backward``; the rest is the time spent outside the kernels (the batch,
the readout and loss, clipping, Adam). For the Numba backend, the share of
the kernel's time spent inside its compiled step loops is measured too (the
rest of a Numba kernel is NumPy and Python: the checks of its arguments,
copies, the input projection and the weight gradients).

Columns: ``step`` and ``kernel`` in µs per step (median of ``--repeat``
training runs of ``--steps`` steps), ``out`` the share of the step outside the kernels, ``loops`` the
share of the Numba kernel in its compiled loops, ``floor`` the Numba
kernel's own GEMM floor in µs per step: exactly the matrix products the
kernel does at this shape (read from its kernel plan), timed alone inside
compiled code, as ``benchmarks/kernels.py`` measures its ``nbfl`` column
(whose functions this column calls). The last lines sum every row (the
experiments train every cell at every length for the same number of steps,
so the sums weigh the rows as a run of ``derive experiment memory`` does),
give the NumPy/Numba ratio of the steps and of the kernels and, with the
floor, the ratio of the steps if the Numba kernels spent no time beyond
their products: a bound on what any kernel doing those products can reach.

Runs on one BLAS thread, as ``derive experiment`` does (threadpoolctl; SciPy's
BLAS, which Numba's ``np.dot`` calls, loaded first). Usage::

    python benchmarks/experiments.py [--cells gru,lstm] [--lengths 10,50] [--steps 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

import derive
from derive.experiments import CELLS, load_kernel
from derive.experiments.tasks import N_INPUTS
from derive.experiments.train import FULL_TRAINING, hidden_size, train
from derive.kernels import BACKENDS


def _one_blas_thread() -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl is not installed: BLAS runs on its default threads", file=sys.stderr)
        return
    if importlib.util.find_spec("scipy") is not None:
        importlib.import_module("scipy.linalg.cython_blas")  # Numba's BLAS, limited only once loaded
    threadpool_limits(1)


@contextmanager
def _timing(module: ModuleType, names: Sequence[str], spent: list[float]) -> Iterator[None]:
    """Within the block, every call of ``module.<name>`` adds its time to
    ``spent[0]`` (the callers look the functions up at each call)."""
    originals = {name: getattr(module, name) for name in names}

    def timed(function: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return call

    try:
        for name, function in originals.items():
            setattr(module, name, timed(function))
        yield
    finally:
        for name, function in originals.items():
            setattr(module, name, function)


LOOPS = ("_forward_steps", "_backward_steps")
"""The compiled step loops of a Numba kernel."""


def measure(cell: str, length: int, backend: str, steps: int, repeat: int) -> dict[str, float | None]:
    """One training step of ``cell`` at ``length`` on ``backend``: its time,
    the time in the kernel's ``forward`` and ``backward`` and, on Numba, in
    their compiled loops; medians over ``repeat`` runs of
    :func:`~derive.experiments.train.train`, after one untimed run.

    The kernel is timed inside real training runs, not by calling it in a
    loop of its own: a loop doing nothing but allocate and free the same large
    arrays makes the allocator hand memory back to the system and fault it in
    again at every call (a thousand page faults per step for some shapes),
    which training, allocating other arrays in between, does not do."""
    config = replace(FULL_TRAINING, steps=steps, backend=backend)
    train(cell, length, 0, replace(config, steps=2))  # loads (and compiles) the kernel
    kernel = load_kernel(cell, backend)
    loops = [name for name in LOOPS if hasattr(kernel, name)] if backend == "numba" else []
    rounds: dict[str, list[float]] = {"step": [], "kernel": [], "loops": []}
    for round_ in range(repeat + 1):
        in_kernel, in_loops = [0.0], [0.0]
        with _timing(kernel, ("forward", "backward"), in_kernel), _timing(kernel, loops, in_loops):
            start = time.perf_counter()
            train(cell, length, 0, config)
            whole = time.perf_counter() - start
        if round_:
            rounds["step"].append(whole / steps)
            rounds["kernel"].append(in_kernel[0] / steps)
            rounds["loops"].append(in_loops[0] / in_kernel[0])
    step, kernel_time = statistics.median(rounds["step"]), statistics.median(rounds["kernel"])
    return {"step": step, "kernel": kernel_time, "loops": statistics.median(rounds["loops"]) if loops else None}


def gemm_floor(cell: str, length: int, repeat: int) -> float:
    """Seconds per step of the Numba kernel's own matrix products for
    ``cell`` at ``length`` and the experiments' shapes (float64, as the
    models' parameters): the median of ``repeat`` calibrated timings of
    ``benchmarks/kernels.py``'s compiled floor on its plan's products."""
    bench = _kernels_benchmark()
    n_h = hidden_size(cell, FULL_TRAINING.param_target)
    forward, backward = bench.plan_gemms(derive.cell(cell), length, FULL_TRAINING.batch, N_INPUTS, n_h)
    sample = bench.calibrated(bench.numba_gemm_runner(forward, backward, np.float64, np.random.default_rng(0)), 0.05)
    return statistics.median(sample() for _ in range(repeat))


def _kernels_benchmark() -> ModuleType:
    """``benchmarks/kernels.py``, loaded once by its path (the benchmarks are
    scripts, not a package)."""
    name = "derive_benchmark_kernels"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("kernels.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up
        try:
            spec.loader.exec_module(module)
        except ImportError:
            del sys.modules[name]
            raise
    return sys.modules[name]


def _floor_available() -> bool:
    """Whether the floor column can be measured: ``benchmarks/kernels.py``
    imports torch (the test extra); if it cannot, say so on stderr."""
    try:
        _kernels_benchmark()
    except ImportError as error:
        print(f"no floor column: benchmarks/kernels.py needs {error.name} (pip install -e '.[test]')", file=sys.stderr)
        return False
    return True


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=lambda text: tuple(text.split(",")), default=CELLS,
                        help=f"comma-separated cells (default {','.join(CELLS)})")
    parser.add_argument("--lengths", type=lambda text: tuple(int(t) for t in text.split(",")), default=(10, 50),
                        help="comma-separated sequence lengths (default 10,50)")
    parser.add_argument("--backends", type=lambda text: tuple(text.split(",")), default=BACKENDS,
                        help=f"comma-separated kernel backends (default {','.join(BACKENDS)})")
    parser.add_argument("--steps", type=int, default=100, help="training steps per round (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per figure, the median kept (default 3)")
    args = parser.parse_args(argv)
    for backend in args.backends:
        if backend not in BACKENDS:
            parser.error(f"--backends: expected some of {', '.join(BACKENDS)}, got {backend!r}")
    if args.steps < 1 or args.repeat < 1:
        parser.error(f"--steps, --repeat: expected positive integers, got {args.steps}, {args.repeat}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; return the exit status."""
    args = _parse(argv)
    _one_blas_thread()
    with_floor = "numba" in args.backends and _floor_available()
    header = f"{'cell':14} {'T':>4} {'n_h':>4}"
    for backend in args.backends:
        header += f" | {backend + ' step':>11} {'kernel':>7} {'out':>4}"
        if backend == "numba":
            header += f" {'loops':>5}" + (f" {'floor':>6}" if with_floor else "")
    print(header)
    sums = {backend: {"step": 0.0, "kernel": 0.0, "floor": 0.0} for backend in args.backends}
    for length in args.lengths:
        for cell in args.cells:
            row = f"{cell:14} {length:4d} {hidden_size(cell, FULL_TRAINING.param_target):4d}"
            for backend in args.backends:
                times = measure(cell, length, backend, args.steps, args.repeat)
                step, kernel = float(times["step"]), float(times["kernel"])
                sums[backend]["step"] += step
                sums[backend]["kernel"] += kernel
                row += f" | {step * 1e6:11.0f} {kernel * 1e6:7.0f} {max(0.0, 1 - kernel / step):4.0%}"
                if backend == "numba":
                    loops = times["loops"]
                    row += f" {loops:5.0%}" if loops is not None else f" {'-':>5}"
                    if with_floor:
                        floor = gemm_floor(cell, length, args.repeat)
                        sums[backend]["floor"] += floor
                        row += f" {floor * 1e6:6.0f}"
            print(row, flush=True)
    total = "sum: " + "; ".join(
        f"{backend} step {s['step'] * 1e3:.1f} ms, kernels {s['kernel'] * 1e3:.1f} ms, "
        f"outside {max(0.0, 1 - s['kernel'] / s['step']):.0%}" for backend, s in sums.items()
    )
    print(total)
    if set(args.backends) == {"numpy", "numba"}:
        np_, nb = sums["numpy"], sums["numba"]
        print(f"numpy/numba: steps {np_['step'] / nb['step']:.2f}x, kernels alone {np_['kernel'] / nb['kernel']:.2f}x")
    if with_floor:
        nb = sums["numba"]
        line = (f"numba kernels' GEMM floor {nb['floor'] * 1e3:.1f} ms: {(nb['kernel'] - nb['floor']) * 1e3:.1f} ms "
                f"of the kernels' {nb['kernel'] * 1e3:.1f} ms beyond their products")
        if "numpy" in sums:
            # the Numba steps with kernels that did their products and nothing else
            at_floor = nb["step"] - nb["kernel"] + nb["floor"]
            line += f"; numpy/numba steps at that floor: {sums['numpy']['step'] / at_floor:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
