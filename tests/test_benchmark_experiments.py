"""benchmarks/experiments.py: a row per cell and length and backend, sums
that add the rows up, the compiled-loop share on Numba. No time is asserted:
speed claims come from the script's printed figures."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

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
    backends = "numpy,numba" if importlib.util.find_spec("numba") else "numpy"
    assert bench.main(["--cells", "gru,rnn", "--lengths", "3,4", "--steps", "2", "--repeat", "1", "--backends", backends]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if re.match(r"(gru|rnn) +[34] ", line)]
    assert [row.split()[:2] for row in rows] == [["gru", "3"], ["rnn", "3"], ["gru", "4"], ["rnn", "4"]]
    for index, backend in enumerate(backends.split(",")):
        columns = [row.split("|")[1 + index].split() for row in rows]
        steps = sum(float(c[0]) for c in columns) / 1e3  # µs per row, ms in the sum
        kernels = sum(float(c[1]) for c in columns) / 1e3
        total = re.search(rf"{backend} step ([\d.]+) ms, kernels ([\d.]+) ms", lines[-2 if "," in backends else -1])
        assert total is not None, lines
        assert float(total[1]) == pytest.approx(steps, abs=0.1) and float(total[2]) == pytest.approx(kernels, abs=0.1)
        if backend == "numba":
            assert all(0 < float(c[3].rstrip("%")) <= 100 for c in columns), columns  # the compiled loops' share
    if "," in backends:
        assert lines[-1].startswith("numpy/numba: steps ")


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
