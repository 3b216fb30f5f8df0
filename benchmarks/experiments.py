"""Where a training step of the experiments spends its time, on each kernel backend.

For each cell and sequence length, at the experiments' shapes (the batch and
hidden size of ``derive experiment``'s full training: B = 64, n_x = 2, n_h of
the ~1200-parameter model), one training step of :func:`derive.experiments.train.train`
is timed whole, and its kernel calls alone (``forward`` then ``backward`` on
the same shapes); the difference is the time spent outside the kernels (the
batch, the readout and loss, clipping, Adam). For the Numba backend, the
share of the kernel's time spent inside its compiled step loops is measured
too (the rest of a Numba kernel is NumPy and Python: the checks of its
arguments, copies, the input projection and the weight gradients).

Columns: ``step`` and ``kernel`` in µs per step (median of ``--repeat``
rounds), ``out`` the share of the step outside the kernels, ``loops`` the
share of the Numba kernel in its compiled loops; the last line sums every row
(the experiments train every cell at every length for the same number of
steps, so the sums weigh the rows as a run of ``derive experiment memory``
does) and gives the NumPy/Numba ratio of the steps and of the kernels.

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
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import ModuleType

import numpy as np

from derive.experiments import CELLS
from derive.experiments.train import FULL_TRAINING, Model, hidden_size, train
from derive.experiments.tasks import adding_problem
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


def _median_seconds(function: Callable[[], object], calls: int, repeat: int) -> float:
    """Median over ``repeat`` rounds of the time of one of ``calls`` calls."""
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def _loop_share(kernel: ModuleType, step: Callable[[], object], calls: int) -> float | None:
    """The share of ``step`` (a kernel's forward and backward) spent in its
    compiled loops ``_forward_steps`` and ``_backward_steps``; None when the
    kernel has none."""
    names = [name for name in ("_forward_steps", "_backward_steps") if hasattr(kernel, name)]
    if not names:
        return None
    inside = [0.0]
    originals = {name: getattr(kernel, name) for name in names}

    def timed(function: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object) -> object:
            start = time.perf_counter()
            result = function(*args)
            inside[0] += time.perf_counter() - start
            return result

        return call

    try:
        for name, function in originals.items():
            setattr(kernel, name, timed(function))  # forward and backward look them up at each call
        start = time.perf_counter()
        for _ in range(calls):
            step()
        total = time.perf_counter() - start
    finally:
        for name, function in originals.items():
            setattr(kernel, name, function)
    return inside[0] / total


def measure(cell: str, length: int, backend: str, steps: int, repeat: int) -> dict[str, float | None]:
    """The times of one training step of ``cell`` at ``length`` on ``backend``."""
    config = replace(FULL_TRAINING, steps=steps, backend=backend)
    train(cell, length, 0, replace(config, steps=2))  # loads (and compiles) the kernel
    whole = _median_seconds(lambda: train(cell, length, 0, config), 1, repeat) / steps
    model = Model.initial(cell, hidden_size(cell, config.param_target), 0, backend)
    xs, _ = adding_problem(np.random.default_rng(0), length, config.batch)
    ys, _ = model.kernel.forward(model.params, xs)
    dys = np.zeros_like(ys)
    dys[-1] = 1.0

    def kernel_step() -> None:
        _, cache = model.kernel.forward(model.params, xs)
        model.kernel.backward(cache, dys)

    kernel = _median_seconds(kernel_step, steps, repeat)
    loops = _loop_share(model.kernel, kernel_step, steps) if backend == "numba" else None
    return {"step": whole, "kernel": kernel, "loops": loops}


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
    header = f"{'cell':14} {'T':>4} {'n_h':>4}"
    for backend in args.backends:
        header += f" | {backend + ' step':>11} {'kernel':>7} {'out':>4}" + (f" {'loops':>5}" if backend == "numba" else "")
    print(header)
    sums = {backend: {"step": 0.0, "kernel": 0.0} for backend in args.backends}
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
            print(row, flush=True)
    total = "sum: " + "; ".join(
        f"{backend} step {s['step'] * 1e3:.1f} ms, kernels {s['kernel'] * 1e3:.1f} ms, "
        f"outside {max(0.0, 1 - s['kernel'] / s['step']):.0%}" for backend, s in sums.items()
    )
    print(total)
    if set(args.backends) == {"numpy", "numba"}:
        np_, nb = sums["numpy"], sums["numba"]
        print(f"numpy/numba: steps {np_['step'] / nb['step']:.2f}x, kernels alone {np_['kernel'] / nb['kernel']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
