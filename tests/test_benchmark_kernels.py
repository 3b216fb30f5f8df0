"""benchmarks/kernels.py: its table has the Numba columns, its Numba floor
does the products of the kernel plan, its target check lists the misses.
No time is asserted: speed claims come from the script's printed figures."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import derive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_kernels", ROOT / "benchmarks" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_plan_products_match_the_structure(bench: ModuleType) -> None:
    """The Numba floor's products do the structural ones' multiply-adds for
    every cell, per step and over all steps (one GEMM per block where the
    structure stacks a part's blocks; neither counts the bias sums)."""
    assert bench.compare_floors(list(derive.NAMES), (7, 3, 5, 6)) == []


def test_numba_floor_computes_the_products(bench: ModuleType) -> None:
    """Each group of the compiled floor (before the loop, forward step,
    backward step, after the loop, after it with a transposed operand) writes
    a @ b into its output."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    forward = [bench.Gemm(4, 3, 5), bench.Gemm(2, 4, 6, 7)]
    backward = [bench.Gemm(2, 6, 4, 7), bench.Gemm(3, 2, 5), bench.Gemm(5, 4, 3, 1, transposed=True)]
    run = bench.numba_gemm_runner(forward, backward, np.float32, rng)
    T, *groups = run.args
    assert T == 7 and [len(g) for g in groups] == [1, 1, 1, 1, 1]
    for group in groups:
        group[0][2][...] = np.nan
    run()
    for group in groups:
        a, b, out = group[0]
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, a @ b, rtol=1e-5)
    assert not groups[4][0][0].flags.c_contiguous  # the transposed operand, as the kernel's δzᵀ


def test_table_has_the_numba_column(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("numba")
    results = bench.kernel_tables(["rnn"], ["small"], [np.float64], ("numpy", "numba"), repeat=1, min_seconds=0.0)
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("numpy", "numba", "torch", "nb/to", "nb/np", "nbfl"):
        assert re.search(rf"\s{re.escape(column)}\b", header), (column, header)
    row = next(line for line in out.splitlines() if line.startswith("rnn "))
    times = row.split("|")[1].split()
    assert len(times) == 3 and all(float(t) > 0 for t in times), row
    (name, shape, dtype, ratios), = results
    assert (name, shape, dtype) == ("rnn", "small", "float64")
    assert {"nb/to", "nb/np", "nbfl", "np/to"} <= set(ratios)


def test_targets_list_each_miss(bench: ModuleType) -> None:
    results = [("a", "small", "float32", {"nb/to": 0.25, "nb/np": 0.1}),
               ("b", "large", "float64", {"nb/np": 1.0, "nbfl": 0.8}),
               ("c", "medium", "float64", {"nb/to": 0.4})]
    misses = bench.check_targets(results)
    assert len(misses) == 2
    assert "a" in misses[0] and "nb/to = 0.250" in misses[0]
    assert "b" in misses[1] and "nbfl = 0.800" in misses[1]


def test_backends_option(bench: ModuleType) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--backends", "numpy,jax"])
