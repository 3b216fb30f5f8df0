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
            assert all(c[3].endswith("%") for c in columns), columns  # the compiled loops' share
    if "," in backends:
        assert lines[-1].startswith("numpy/numba: steps ")


def test_bad_backend_is_refused(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--backends", "jax"])
    assert "--backends: expected some of numpy, numba, got 'jax'" in capsys.readouterr().err
