"""benchmarks/experiments.py: a row per cell and length and backend, sums
that add the rows up, the compiled-loop share on Numba. No time is asserted:
speed claims come from the script's printed figures."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_experiments", ROOT / "benchmarks" / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_table_has_a_row_per_cell_and_length_and_sums_them(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with_numba = importlib.util.find_spec("numba") is not None
    backends = "numpy,numba" if with_numba else "numpy"
    assert bench.main(["--cells", "gru,rnn", "--lengths", "3,4", "--steps", "2", "--repeat", "1", "--backends", backends]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if re.match(r"(gru|rnn) +[34] ", line)]
    assert [row.split()[:2] for row in rows] == [["gru", "3"], ["rnn", "3"], ["gru", "4"], ["rnn", "4"]]
    sums = next(line for line in lines if line.startswith("sum: "))
    for index, backend in enumerate(backends.split(",")):
        columns = [row.split("|")[1 + index].split() for row in rows]
        steps = sum(float(c[0]) for c in columns) / 1e3  # µs per row, ms in the sum
        kernels = sum(float(c[1]) for c in columns) / 1e3
        total = re.search(rf"{backend} step ([\d.]+) ms, kernels ([\d.]+) ms", sums)
        assert total is not None, lines
        assert float(total[1]) == pytest.approx(steps, abs=0.1) and float(total[2]) == pytest.approx(kernels, abs=0.1)
        if backend == "numba":
            assert all(0 < float(c[3].rstrip("%")) <= 100 for c in columns), columns  # the compiled loops' share
            floors = [float(c[4]) for c in columns]  # the GEMM floor, µs per step: grows with T at one n_h
            assert all(f > 0 for f in floors) and floors[2] > floors[0] and floors[3] > floors[1], columns
            floor = re.fullmatch(r"numba kernels' GEMM floor ([\d.]+) ms: ([\d.]+) ms of the kernels' ([\d.]+) ms "
                                 r"beyond their products; numpy/numba steps at that floor: ([\d.]+)x", lines[-1])
            assert floor is not None, lines[-1]
            assert float(floor[1]) == pytest.approx(sum(floors) / 1e3, abs=0.1)
            assert float(floor[1]) + float(floor[2]) == pytest.approx(kernels, abs=0.1)
            numpy_steps = float(re.search(r"numpy step ([\d.]+) ms", sums)[1])
            at_floor = steps - kernels + sum(floors) / 1e3  # the Numba steps with kernels doing only their products
            assert float(floor[4]) == pytest.approx(numpy_steps / at_floor, rel=0.05)
    if with_numba:
        assert lines[-2].startswith("numpy/numba: steps ")


def test_gemm_floor_times_the_plans_products(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The floor of a row is the compiled floor of the kernel plan's products
    at the experiments' shapes: B = 64, n_x = 2, the model's n_h, float64."""
    pytest.importorskip("numba")
    kernels = bench._kernels_benchmark()
    seen = {}

    def runner(forward: list, backward: list, dtype: type, rng: object) -> object:
        seen.update(forward=forward, backward=backward, dtype=dtype)
        return lambda: None

    monkeypatch.setattr(kernels, "numba_gemm_runner", runner)
    monkeypatch.setattr(kernels, "calibrated", lambda fn, seconds: iter([3.0, 1.0, 2.0]).__next__)
    assert bench.gemm_floor("lstm", 7, repeat=3) == 2.0  # the median
    n_h = bench.hidden_size("lstm", bench.FULL_TRAINING.param_target)
    assert (seen["forward"], seen["backward"]) == kernels.plan_gemms(bench.derive.cell("lstm"), 7, 64, 2, n_h)
    assert seen["dtype"] is np.float64


def test_bad_backend_is_refused(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--backends", "jax"])
    assert "--backends: expected some of numpy, numba, got 'jax'" in capsys.readouterr().err


def test_measure_splits_a_step_into_kernel_loops_and_the_rest(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock: a step spends 5 outside the kernel, 1 + 2 in forward
    (2 of them in its compiled loop) and 3 + 4 in backward (4 in its loop)."""
    import types

    clock = [0.0]
    kernel = types.ModuleType("fake_kernel")

    def spend(amount: float) -> None:
        clock[0] += amount

    kernel._forward_steps = lambda: spend(2.0)
    kernel._backward_steps = lambda: spend(4.0)
    kernel.forward = lambda: (spend(1.0), kernel._forward_steps())
    kernel.backward = lambda: (spend(3.0), kernel._backward_steps())

    def fake_train(cell: str, length: int, seed: int, config: object) -> None:
        for _ in range(config.steps):
            spend(5.0)
            kernel.forward()
            kernel.backward()

    functions = {name: getattr(kernel, name) for name in ("forward", "backward", "_forward_steps", "_backward_steps")}
    monkeypatch.setattr(bench, "train", fake_train)
    monkeypatch.setattr(bench, "load_kernel", lambda cell, backend: kernel)
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    assert bench.measure("gru", 3, "numba", steps=4, repeat=2) == {"step": 15.0, "kernel": 10.0, "loops": 0.6}
    assert bench.measure("gru", 3, "numpy", steps=4, repeat=2) == {"step": 15.0, "kernel": 10.0, "loops": None}
    assert all(getattr(kernel, name) is function for name, function in functions.items())  # put back


def test_without_torch_the_table_has_no_floor_column_and_says_why(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/kernels.py, whose floor the column times, imports torch:
    without it the rest of the table is printed and stderr says what is missing."""
    pytest.importorskip("numba")

    def missing() -> ModuleType:
        raise ImportError("No module named 'torch'", name="torch")

    monkeypatch.setattr(bench, "_kernels_benchmark", missing)
    assert bench.main(["--cells", "rnn", "--lengths", "3", "--steps", "2", "--repeat", "1"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[-1] == "loops" and len(lines[1].split("|")[2].split()) == 4, lines
    assert not any("GEMM floor" in line for line in lines)
    assert "no floor column: benchmarks/kernels.py needs torch (pip install -e '.[test]')" in captured.err
