"""Does σ's float32 left tail matter for the gradients? Measured, per cell.

σ(z) = ½(1 + tanh(z/2)) alone (the kernels' form until the runtime
recomputed the tail) cancels for z ≪ 0: in float32 its values are
multiples of 6e−8 there, and 0 below z ≈ −17 where the true value is
2e−9 … 4e−8. This script measures what that does to the gradients of
every cell: each float32 gradient with the tanh form alone, with the
runtime's σ (tanh form, tail recomputed as e^z / (1 + e^z)), and with a
correctly rounded σ (computed in float64, rounded once), against the
float64 kernel. Then the speed of the kernels with either σ, forward and
backward, interleaved rounds.

Three regimes: ``init`` (PyTorch's initialisation), ``saturated`` (every
σ bias shifted by −20: every gate almost closed, the case the tail is
about) and ``wide`` (weights ×8: pre-activations of tens, both tails).
The figure per gradient is max|g32 − g64| / max|g64|: the error relative
to the gradient's own scale, which is what an optimiser step sees.

Run::

    python benchmarks/sigmoid_tail.py            # accuracy and speed
    python benchmarks/sigmoid_tail.py --quick    # fewer seeds and rounds
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import numpy as np

import derive
from derive import kernels, runtime
from derive.functions import sigmoid

T, B, N_X, N_H = 20, 8, 6, 8


def _sigma_biases(cell_name: str) -> list[str]:
    """The biases of the affine nodes whose value goes through σ."""
    cell = derive.cell(cell_name)
    gates = {n.expr.args[0].name for n in cell.nodes if isinstance(getattr(n, "expr", None), sigmoid)}
    return [n.bias for n in cell.nodes if getattr(n, "target", None) in gates and getattr(n, "bias", None)]


def _run(kernel, params, xs, dys):  # noqa: ANN001, ANN202
    ys, cache = kernel.forward(params, xs)
    return ys, kernel.backward(cache, dys)


def _accurate_sigmoid_of_half(half_z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ from z/2, computed in float64 and rounded once: a correctly rounded float32 σ."""
    value = 1.0 / (1.0 + np.exp(-2.0 * half_z.astype(np.float64)))
    if out is None:
        return value.astype(half_z.dtype)
    out[...] = value
    return out


def tanh_form(half_z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The σ of the kernels before: ½ tanh(z/2) + ½ everywhere (three passes)."""
    out = np.tanh(half_z, out=out)
    half = out.dtype.type(0.5)
    out *= half
    out += half
    return out


FORMS = {"tanh form": tanh_form, "runtime": runtime.sigmoid_of_half, "exact σ": _accurate_sigmoid_of_half}


def _with_sigma(kernel, form, call):  # noqa: ANN001, ANN202
    """``call()`` with the kernel module's σ replaced by ``form`` (if it has one)."""
    module = importlib.import_module(kernel.__name__)
    saved = getattr(module, "sigmoid_of_half", None)
    if saved is None:
        return call()
    module.sigmoid_of_half = form
    try:
        return call()
    finally:
        module.sigmoid_of_half = saved


def measure(cell_name: str, regime: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per σ form, per gradient: the float32 error against float64."""
    kernel = kernels.load(cell_name)
    params = kernel.init_params(N_X, N_H, seed=seed)
    if regime == "saturated":
        for b in _sigma_biases(cell_name):
            params[b] = params[b] - 20.0
    elif regime == "wide":
        params = {k: 8.0 * v for k, v in params.items()}
    rng = np.random.default_rng(seed)
    xs, dys = rng.normal(size=(T, B, N_X)), rng.normal(size=(T, B, N_H))
    _, g64 = _run(kernel, params, xs, dys)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    args = (kernel, p32, xs.astype(np.float32), dys.astype(np.float32))
    out = {}
    for name, form in FORMS.items():
        g32 = _with_sigma(kernel, form, lambda: _run(*args)[1])
        out[name] = {k: _err(g32[k], g64[k]) for k in g64}
    return out


def speed(cell_name: str, dtype: type, T_: int, B_: int, n: int, rounds: int) -> dict[str, float]:
    """Best forward+backward time (ms) with each σ form over interleaved rounds:
    on a shared machine other work only adds time, so the minimum is the cost."""
    kernel = kernels.load(cell_name)
    params = kernel.init_params(n, n, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    xs, dys = rng.normal(size=(T_, B_, n)).astype(dtype), rng.normal(size=(T_, B_, n)).astype(dtype)
    times: dict[str, list[float]] = {"tanh form": [], "runtime": []}
    for r in range(rounds):
        for name in (list(times) if r % 2 == 0 else list(times)[::-1]):
            def once() -> float:
                start = time.perf_counter()
                _run(kernel, params, xs, dys)
                return (time.perf_counter() - start) * 1e3
            times[name].append(_with_sigma(kernel, FORMS[name], once))
    return {k: min(v) for k, v in times.items()}


def sigma_alone(dtype: type, shape: tuple[int, ...], rounds: int, spread: float) -> dict[str, float]:
    """Best time (µs) of σ alone on z/2 ~ N(0, spread²) with each form."""
    half_z = np.random.default_rng(1).normal(scale=spread, size=shape).astype(dtype)
    out = np.empty_like(half_z)
    best = {"tanh form": float("inf"), "runtime": float("inf")}
    number = max(1, 20000 // half_z.size)
    for _ in range(rounds):
        for name in best:
            start = time.perf_counter()
            for _ in range(number):
                FORMS[name](half_z, out=out)
            best[name] = min(best[name], (time.perf_counter() - start) / number * 1e6)
    return best


def _err(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a.astype(np.float64) - b))) / scale if scale > 0 else float(np.max(np.abs(a)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 rounds")
    args = parser.parse_args()
    seeds, rounds = (1, 5) if args.quick else (3, 21)
    zs = (-10.0, -17.0, -18.0, -20.0, -30.0)
    for name, form in FORMS.items():
        values = form(np.array(zs, np.float32) / 2)
        print(f"σ(z) float32, {name:<9}, z = {', '.join(f'{z:g}' for z in zs)}: " + ", ".join(f"{v:.3g}" for v in values))
    print(f"\nT={T}, B={B}, n_x={N_X}, n_h={N_H}; worst gradient over {seeds} seeds of max|g32 − g64| / max|g64|")
    print(f"{'cell':<11} {'regime':<10} " + " ".join(f"{k:>10}" for k in FORMS) + "   worst gradient (tanh form)")
    for cell_name in derive.NAMES:
        for regime in ("init", "saturated", "wide"):
            worst = {name: {} for name in FORMS}
            for seed in range(seeds):
                for name, errs in measure(cell_name, regime, seed).items():
                    for k, e in errs.items():
                        worst[name][k] = max(worst[name].get(k, 0.0), e)
            key = max(worst["tanh form"], key=worst["tanh form"].get)
            print(f"{cell_name:<11} {regime:<10} " + " ".join(f"{max(worst[n].values()):>10.2e}" for n in FORMS) + f"   {key}")
    print("\nσ alone, µs (best of interleaved rounds); spread: the standard deviation of z/2")
    print(f"{'dtype':<8} {'shape':<14} {'spread':>6} {'tanh form':>10} {'runtime':>10} {'ratio':>7}")
    for dtype in (np.float32, np.float64):
        for shape in ((1, 8), (3, 32, 64), (3, 64, 256)):
            for spread in (1.0, 4.0):
                t = sigma_alone(dtype, shape, rounds, spread)
                print(f"{np.dtype(dtype).name:<8} {str(shape):<14} {spread:>6.1f} {t['tanh form']:>10.2f} {t['runtime']:>10.2f} "
                      f"{t['runtime'] / t['tanh form']:>7.3f}")
    print("\nforward + backward, ms (best of interleaved rounds)")
    print(f"{'cell':<11} {'dtype':<8} {'T':>4} {'B':>4} {'n':>4} {'tanh form':>10} {'runtime':>10} {'ratio':>7}")
    for cell_name in derive.NAMES:
        for dtype in (np.float32, np.float64):
            for T_, B_, n in ((50, 1, 8), (50, 32, 64)):
                t = speed(cell_name, dtype, T_, B_, n, rounds)
                print(f"{cell_name:<11} {np.dtype(dtype).name:<8} {T_:>4} {B_:>4} {n:>4} "
                      f"{t['tanh form']:>10.3f} {t['runtime']:>10.3f} {t['runtime'] / t['tanh form']:>7.3f}")

if __name__ == "__main__":
    main()
