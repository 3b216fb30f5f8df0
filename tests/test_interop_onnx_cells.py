"""Any cell as an ONNX Scan graph (derive.render.onnx_graph), run in onnxruntime
in float64 against the cell's generated NumPy kernel, and `derive export`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
from interop_support import need

import derive
from derive import CellBuilder, functions, kernels

HERE = Path(__file__).resolve().parent
T, B, N_X, N_H = 6, 3, 4, 5
USER_FILES = sorted((HERE / "user_cells").glob("*.py")) + sorted((HERE / "cells").glob("*.cell"))


def every_function_cell() -> derive.Cell:
    """A cell that applies every forward activation of the registry, with a
    quotient, a power and a per-element parameter, so that the printer spells them all."""
    b = CellBuilder("every_function", "Every function", "Exercises the ONNX printer.", source="tests")
    x, c_prev = b.input("x"), b.state("c")
    p = b.param("p")
    z = b.affine("z", "W", [c_prev, x], "b")
    g = b.node("g", functions.hard_sigmoid(z) * functions.sigmoid(p * c_prev))
    s = b.node("s", functions.softplus(z) / (1 + sympy.exp(-functions.relu(z))) + z ** 2 / 7)
    h = b.node("h", sympy.tanh(functions.identity(s) - 2 * g))
    b.node("c", g * h + (1 - g) * c_prev - sympy.Rational(1, 10) * c_prev / (2 + c_prev ** 2))
    return b.build(output="c")


def _cells():
    cells = [pytest.param(name, id=name) for name in derive.names()]
    cells += [pytest.param(str(path), id=path.name) for path in USER_FILES]
    return cells + [pytest.param("every_function", id="every_function")]


def _resolve(spec: str) -> derive.Cell:
    return every_function_cell() if spec == "every_function" else derive.resolve(spec)


@pytest.mark.parametrize("spec", _cells())
def test_scan_graph_equals_the_kernel_in_float64(spec):
    need("onnxruntime")
    from derive.interop.onnx import export_cell, run

    cell = _resolve(spec)
    kernel = kernels.compile(cell) if spec == "every_function" else kernels.load(cell)
    params = kernel.init_params(N_X, N_H, seed=3)
    rng = np.random.default_rng(4)
    xs = rng.normal(size=(T, B, N_X)) * (8 if spec == "every_function" else 2)
    state0 = {s: rng.uniform(-0.9, 0.9, (B, N_H)) for s in kernel.STATES}
    ys, cache = kernel.forward(params, xs, state0)
    if spec == "every_function":  # hard-σ clipped on both sides, ReLU at zero: every branch printed is run
        assert {0.0, 1.0} <= set(np.unique(cache["hard_sigmoid_z"])) and (cache["relu_z"] == 0).any()
    ys_o, final = run(export_cell(cell, params), xs, state0)
    assert sorted(final) == sorted(kernel.STATES)
    gap = max([np.abs(ys - ys_o).max()] + [np.abs(cache["final"][s] - final[s]).max() for s in final])
    assert gap < 1e-10


def test_every_forward_activation_has_an_onnx_spelling():
    from derive.render.onnx_graph import SPELLINGS

    assert sorted(SPELLINGS) == sorted(a.name for a in functions.REGISTRY if not a.indicator)


def test_float32_model_in_onnxruntime():
    need("onnxruntime")
    from derive.interop.onnx import export_cell, run

    kernel = kernels.load("lstm")
    params = kernel.init_params(N_X, N_H, seed=5, dtype=np.float32)
    xs = np.random.default_rng(6).normal(size=(T, B, N_X)).astype(np.float32)
    ys, _ = kernel.forward(params, xs)
    ys_o, _ = run(export_cell("lstm", params), xs)
    assert ys_o.dtype == np.float32 and np.abs(ys - ys_o).max() < 1e-6


def _derive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True,
                          cwd=HERE.parent, check=False)


def test_cli_export_a_user_file_with_params(tmp_path):
    onnx = need("onnx")
    need("onnxruntime")
    from derive.interop.onnx import run

    cell = derive.load_cell(HERE / "user_cells" / "mgu.py")
    params = kernels.compile(cell).init_params(3, 4, seed=7)
    np.savez(tmp_path / "p.npz", **params)
    out = tmp_path / "mgu.onnx"
    proc = _derive("export", "tests/user_cells/mgu.py", "--onnx", str(out), "--params", str(tmp_path / "p.npz"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out} (mgu, n_x=3, n_h=4, float64, opset 21)"
    model = onnx.load(out)
    assert "derive export tests/user_cells/mgu.py" in model.doc_string
    xs = np.random.default_rng(8).normal(size=(5, 2, 3))
    np.testing.assert_allclose(run(model, xs)[0], kernels.compile(cell).forward(params, xs)[0], rtol=0, atol=1e-12)


def test_cli_export_a_built_in_cell_by_sizes(tmp_path):
    onnx = need("onnx")
    out = tmp_path / "gru.onnx"
    proc = _derive("export", "gru", "--onnx", str(out), "--n-x", "2", "--n-h", "3")
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(out)
    assert model.graph.node[0].op_type == "Scan" and model.opset_import[0].version == 21
    again = tmp_path / "again.onnx"
    assert _derive("export", "gru", "--onnx", str(again), "--n-x", "2", "--n-h", "3").returncode == 0
    assert again.read_bytes() == out.read_bytes()  # deterministic


@pytest.mark.parametrize(("args", "message"), [
    (["gru"], "derive export: error: the following arguments are required: --onnx"),
    (["gru", "--onnx", "o.onnx"], "derive: error: --n-x and --n-h are needed without --params"),
    (["nope", "--onnx", "o.onnx", "--n-x", "2", "--n-h", "2"], "derive: error: unknown cell 'nope'"),
    (["gru", "--onnx", "o.onnx", "--params", "missing.npz"],
     "derive: error: --params: no such file missing.npz"),
    (["gru", "--onnx", "o.onnx", "--n-x", "0", "--n-h", "2"], "derive: error: n_x: expected a positive integer, got 0"),
])
def test_cli_export_errors_are_one_line_exit_2(args, message, tmp_path):
    proc = _derive("export", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 or proc.stderr.startswith("usage:")


def test_cli_export_params_of_another_cell_are_refused_in_one_line(tmp_path):
    np.savez(tmp_path / "gru.npz", **kernels.load("gru").init_params(2, 3))
    proc = _derive("export", "lstm", "--onnx", str(tmp_path / "o.onnx"), "--params", str(tmp_path / "gru.npz"))
    assert proc.returncode == 2 and not (tmp_path / "o.onnx").exists()
    assert proc.stderr.startswith("derive: error: --params: params: expected keys ['W_i', 'b_i',")
    assert proc.stderr.count("\n") == 1


def test_cli_export_without_onnx_says_which_extra(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None; from derive.cli import main; "
            f"sys.exit(main(['export', 'gru', '--onnx', {str(tmp_path / 'o.onnx')!r}, '--n-x', '2', '--n-h', '2']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("derive: error: derive.interop.onnx needs onnx: pip install 'derive[interop]'")
    assert proc.stderr.count("\n") == 1
