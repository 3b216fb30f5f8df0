"""``import derive`` imports nothing heavy: a committed kernel loads and
runs without SymPy (about 0.3 s of every process that only trains), and the
package's functions ``derive.cell`` and ``derive.cells`` stay functions
whichever order their submodules are imported in."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import derive
from derive import kernels

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, tmp_path: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_committed_kernel_loads_and_runs_without_sympy(backend: str, tmp_path: Path) -> None:
    if backend == "numba" and importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    script = f"""
import sys
import numpy as np
from derive import kernels
k = kernels.load("lstm", backend={backend!r})
ys, cache = k.forward(k.init_params(2, 3), np.ones((4, 1, 2)))
grads = k.backward(cache, np.ones(ys.shape))
print("RAN", ys.shape, all(g in grads for g in ("W_f", "xs", "c0")))
print("SYMPY", sorted(m for m in sys.modules if m == "sympy" or m.startswith("sympy.")))
"""
    lines = _run(script, tmp_path)
    assert "RAN (4, 1, 3) True" in lines
    assert "SYMPY []" in lines


def test_the_package_functions_survive_their_submodules_imported_first(tmp_path: Path) -> None:
    script = """
import derive.cell, derive.cells, derive.render.latex
import derive
from derive import Cell, CellBuilder, load_cell
print("CELL", derive.cell("gru").name, isinstance(derive.cell("gru"), Cell))
print("CELLS", [c.name for c in derive.cells()][:2], derive.NAMES[:2])
print("DIR", {"cell", "cells", "load_cell", "NAMES"} <= set(dir(derive)))
"""
    lines = _run(script, tmp_path)
    assert "CELL gru True" in lines
    assert "CELLS ['rnn', 'rnn_relu'] ('rnn', 'rnn_relu')" in lines
    assert "DIR True" in lines


@pytest.mark.parametrize("name", ["scan", "numba", "runtime", "__init__", "Gru", "gru.py", "../runtime", "numba.rnn"])
def test_a_name_that_is_not_a_cell_is_refused_even_where_a_module_has_it(name: str) -> None:
    with pytest.raises(derive.UnknownCellError, match=f"unknown cell {name!r}"):
        kernels.load(name)


def test_a_built_in_cell_by_name_or_by_cell_gives_its_committed_module() -> None:
    assert kernels.load("gru") is kernels.load(derive.cell("gru")) is sys.modules["derive.kernels.gru"]
    assert derive.NAMES == derive.names()
