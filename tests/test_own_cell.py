"""A cell written in one file outside the package gets what a built-in cell gets.

The four cells of ``tests/user_cells/`` (MGU, minGRU, a diagonal-peephole
LSTM, IndRNN) are copied to a temporary directory — outside the package —
and each goes through what a user would do: ``derive show --backward``,
``derive build --cell … --out DIR`` (the module written there is imported
and run), ``derive prove``, finite differences of the generated kernel in
float64, and its LaTeX through KaTeX. Then every mistake a cell file can
make gives one ``CellError`` line, never a traceback and never a silently
wrong gradient.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

import derive
from derive import CellBuilder, CellError, kernels, proof
from derive.cli import main
from derive.functions import relu, sigmoid
from derive.graph import Elementwise

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
USER_CELLS = ("mgu", "min_gru", "lstm_peephole", "indrnn")
CELL_FILES: dict[str, str] = {"mgu": "mgu", "min_gru": "mingru", "lstm_peephole": "lstm_peephole", "indrnn": "indrnn"}  # their .cell twins in tests/cells/


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four cell files, in a directory outside the package."""
    where = tmp_path_factory.mktemp("my_cells")
    for name in USER_CELLS:
        shutil.copy(HERE / "user_cells" / f"{name}.py", where / f"{name}.py")
    assert not str(where).startswith(str(ROOT / "derive"))
    return where


def _import(path: Path):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(f"k_{path.parent.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's on-disk cache finds a compiled function's module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", USER_CELLS)
def test_show_build_and_run_a_cell_file(backend: str, name: str, outside: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    file = outside / f"{name}.py"
    assert main(["show", str(file), "--backward"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{name}:") and "δx(t) =" in shown

    out = tmp_path / "kernels"
    option = [] if backend == "numpy" else ["--backend", backend]
    assert main(["build", "--cell", str(file), "--out", str(out), *option]) == 0
    written = out / (f"{name}.py" if backend == "numpy" else f"{name}_{backend}.py")
    assert sorted(p.name for p in out.glob("*.py")) == [written.name]
    header = written.read_text(encoding="utf-8").splitlines()[0]
    assert str(file) in header and "derive build --cell" in header  # names the real source file
    assert (f"--backend {backend}" in header) == (backend != "numpy")
    assert main(["check", "--cell", str(file), "--out", str(out), *option]) == 0
    written.write_text(written.read_text(encoding="utf-8").replace("return ys, cache", "return -ys, cache", 1), encoding="utf-8")
    assert main(["check", "--cell", str(file), "--out", str(out), *option]) == 1  # an edited kernel is stale
    capsys.readouterr()

    assert main(["build", "--cell", str(file), "--out", str(out), *option]) == 0
    kernel = _import(written)
    params = kernel.init_params(3, 4, seed=1)
    xs = np.random.default_rng(0).standard_normal((6, 2, 3))
    ys, cache = kernel.forward(params, xs)
    grads = kernel.backward(cache, np.ones_like(ys))
    assert ys.shape == (6, 2, 4) and set(grads) == set(params) | {"xs"} | {f"{s}0" for s in kernel.STATES}


@pytest.mark.parametrize("name", USER_CELLS)
def test_finite_differences_of_a_cell_file(backend: str, name: str, outside: Path) -> None:
    cell = derive.load_cell(outside / f"{name}.py")
    errors = proof.finite_differences(kernels.compile(cell, backend), T=5, B=3, seed=2)
    worst = max(errors, key=errors.get)
    print(f"{name}: max relative error {errors[worst]:.1e} ({worst})")
    assert errors[worst] < 1e-6, f"{name}: {worst} off by {errors[worst]:.1e}"


def test_prove_a_cell_file_on_the_command_line(outside: Path) -> None:
    """``derive prove FILE`` as a user runs it: exit 0, one line per check."""
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "prove", str(outside / "mgu.py")],
                          capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("ok ") for line in lines) == 6  # identities, 2 sizes × 2 step counts, finite differences
    assert "n_x=3 T=2" in proc.stdout and "finite differences" in proc.stdout


@pytest.mark.parametrize("form", ["py", "cell"])
@pytest.mark.parametrize("name", USER_CELLS)
def test_prove_holds_for_every_cell_file(name: str, form: str, outside: Path, tmp_path: Path) -> None:
    """``derive prove`` (one step, n_x = 2; the command line runs both step
    counts and sizes, above) on each cell, written in Python and as text."""
    if form == "py":
        file = outside / f"{name}.py"
    else:
        file = tmp_path / f"{CELL_FILES[name]}.cell"
        shutil.copy(HERE / "cells" / file.name, file)
    checks = list(proof.prove(derive.load_cell(file), steps=(1,), sizes=(2,)))
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]


def test_a_wrong_reference_fails_the_proof(outside: Path) -> None:
    """The proof compares with the reference step given: one whose mix is
    reversed (the old state weighted by G_f) is reported, not accepted."""
    cell = derive.load_cell(outside / "mgu.py")

    def reversed_mix(p: dict, x: sympy.Matrix, s: dict, f: object) -> dict:
        c = s["c"]
        g = f.sigmoid(p["W_f"] * sympy.Matrix.vstack(c, x) + p["b_f"])
        h = f.tanh(p["W_h"] * sympy.Matrix.vstack(g.multiply_elementwise(c), x) + p["b_h"])
        return {"c": g.multiply_elementwise(c) + (sympy.ones(*g.shape) - g).multiply_elementwise(h)}

    checks = list(proof.prove(cell, reference=reversed_mix, steps=(1,), sizes=(2,)))
    assert not checks[1].ok and "reference" in checks[1].name


def test_a_right_reference_passes(outside: Path) -> None:
    cell = derive.load_cell(outside / "indrnn.py")

    def indrnn(p: dict, x: sympy.Matrix, s: dict, f: object) -> dict:
        return {"c": f.relu(p["W"] * x + p["b"] + p["u"].multiply_elementwise(s["c"]))}

    checks = list(proof.prove(cell, reference=indrnn, steps=(1,), sizes=(2,)))
    assert all(c.ok for c in checks), [c.line() for c in checks]


def test_latex_of_cell_files_renders_in_katex(outside: Path) -> None:
    from derive.site.katex import Formula, KatexRenderer, KatexSetupError

    renderer = KatexRenderer(ROOT)
    try:
        renderer.check()
    except KatexSetupError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))
    files = [outside / f"{n}.py" for n in USER_CELLS] + [HERE / "cells" / f"{CELL_FILES[n]}.cell" for n in USER_CELLS]
    formulas = [Formula(derive.load_cell(f).latex(which), True) for f in files for which in ("forward", "backward", "jacobian")]
    rendered = renderer.render(formulas)
    bad = {f.tex[:60]: r.error for f, r in rendered.items() if r.error or r.html is None}
    assert not bad, bad


def test_kernels_compile_generate_and_load_agree(outside: Path) -> None:
    cell = derive.load_cell(outside / "min_gru.py")
    source = kernels.generate(cell)
    assert source.startswith("# Generated by `derive build`") and cell.source in source.splitlines()[0]
    module = kernels.compile(cell)
    assert module.CELL == "min_gru" and kernels.load(cell).CELL == "min_gru"
    assert kernels.load(derive.cell("gru")) is kernels.load("gru")  # a built-in cell: its committed module


# -- what the builder now expresses -------------------------------------------------
def _three_block_cell() -> derive.Cell:
    """A weight on three blocks, one of them the state at t (read directly)."""
    b = CellBuilder("three", "three blocks", "")
    x, a_prev, c_prev = b.input("x"), b.state("a"), b.state("c")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [a_prev, x, c_prev], "b_h")))
    c = b.node("c", sigmoid(b.affine("z_f", "W_f", [x], "b_f")) * c_prev + h)
    b.node("a", sympy.tanh(b.affine("z_o", "W_o", [a_prev, x, c], "b_o")))
    return b.build(output="a")


def test_a_weight_on_three_blocks_and_on_the_state_at_t() -> None:
    cell = _three_block_cell()
    kernel = kernels.compile(cell)
    params = kernel.init_params(2, 3)
    assert params["W_o"].shape == (3, 3 + 2 + 3)
    errors = proof.finite_differences(kernel)
    assert max(errors.values()) < 1e-6, errors
    assert not proof.mismatches(cell, 2, 1)


def test_division_and_the_new_activations() -> None:
    """softplus, hard-σ, exp and a division (minLSTM's f / (f + i)) derive, prove and pass finite differences."""
    from derive.functions import hard_sigmoid, softplus

    b = CellBuilder("mix", "all activations", "")
    x, c_prev = b.input("x"), b.state("c")
    f = b.node("f", sigmoid(b.affine("z_f", "W_f", [x], "b_f")))
    i = b.node("i", hard_sigmoid(b.affine("z_i", "W_i", [x, c_prev], "b_i")))
    h = b.node("h", softplus(b.affine("z_h", "W_h", [x], "b_h")))
    e = b.node("e", sympy.exp(b.affine("z_e", "W_e", [c_prev], None)) * 0.25)
    b.node("c", f / (f + i) * c_prev + i / (f + i) * h - e)
    cell = b.build(output="c")
    assert not proof.mismatches(cell, 2, 1) and not proof.mismatches(cell, 2, 2)  # one and two steps
    errors = proof.finite_differences(kernels.compile(cell), seed=3)
    assert max(errors.values()) < 1e-6, errors


# -- mistakes: one CellError line each ---------------------------------------------
def _mistake(which: str) -> None:
    b = CellBuilder("bad", "bad", "", source="bad_cell.py")
    x, c_prev = b.input("x"), b.state("c")
    z = sympy.Symbol("z")
    if which == "weight on two concatenations":
        g = b.node("g", sigmoid(b.affine("z_g", "W", [c_prev, x], "b_g")))
        b.node("c", g * sympy.tanh(b.affine("z_h", "W", [x, c_prev], "b_h")))
    elif which == "n_x mixed into n_h":
        b.node("c", c_prev + x)
    elif which == "undefined affine input":
        b.affine("z_h", "W_h", [sympy.Symbol("fc"), x], "b_h")
    elif which == "undefined vector":
        b.node("c", sympy.Symbol("p_i") * c_prev)
    elif which == "Max":
        b.node("c", sympy.Max(0, b.affine("z", "W", [c_prev, x], "b")))
    elif which == "log":
        b.node("c", sympy.log(1 + sympy.exp(b.affine("z", "W", [c_prev, x], "b"))))
    elif which == "node reaching nothing":
        b.node("unused", sympy.tanh(b.affine("z_u", "W_u", [x], None)))
        b.node("c", sympy.tanh(b.affine("z", "W", [c_prev, x], "b")))
        b.build(output="c")
    elif which == "state never computed":
        b.node("h", sympy.tanh(b.affine("z", "W", [c_prev, x], "b")))
        b.build(output="h")
    elif which == "weight used element-wise":
        z = b.affine("z", "W", [c_prev, x], "b")
        b.node("c", sympy.tanh(z) * sympy.Symbol("b"))
    else:  # pragma: no cover
        raise AssertionError(which)
    del z


MISTAKES = {
    "weight on two concatenations": "'W' is already used by the affine node 'z_g'",
    "n_x mixed into n_h": "mixes sizes element-wise: c_prev is n_h, x is n_x",
    "undefined affine input": "reads fc, which is not a defined vector",
    "undefined vector": "uses undefined vectors ['p_i']",
    "Max": "unknown function 'Max'; known: sigmoid, tanh, relu",
    "log": "unknown function 'log'; known: sigmoid, tanh, relu",
    "node reaching nothing": "node 'z_u': reaches neither the output nor a new state",
    "state never computed": "state 'c' is never computed",
    "weight used element-wise": "a weight or bias of an affine node, element-wise",
}


@pytest.mark.parametrize("which", MISTAKES)
def test_each_mistake_is_one_cell_error(which: str) -> None:
    with pytest.raises(CellError) as e:
        _mistake(which)
    message = str(e.value)
    assert MISTAKES[which] in message and message.startswith("bad_cell.py:") and "\n" not in message


def test_the_command_line_prints_a_cell_error_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sympy\nfrom derive import CellBuilder\n\ndef build():\n"
                   "    b = CellBuilder('bad')\n    x, c = b.input('x'), b.state('c')\n"
                   "    b.node('c', sympy.Max(0, b.affine('z', 'W', [c, x], 'b')))\n    return b.build(output='c')\n")
    for args in (["show", str(bad)], ["build", "--cell", str(bad), "--out", str(tmp_path)], ["prove", str(bad)]):
        proc = subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{bad}: node 'c': unknown function 'Max'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "show", str(tmp_path / "missing.py")],
                          capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.strip().endswith("missing.py: no such file")


def test_the_same_weight_on_two_concatenations_cannot_give_wrong_gradients() -> None:
    """The bug the validation is for: with n_x = n_h the second use of W
    shaped fine and its gradient came out 1.22 off. It is now refused."""
    with pytest.raises(CellError, match="each weight and bias belongs to one affine node"):
        _mistake("weight on two concatenations")


def test_nested_activation_gets_a_cached_node() -> None:
    """G_o ⊙ tanh(c) written in one node: tanh(c) becomes a hidden node, and
    its derivative reads it from the cache (1 − tanh_c²), as the LSTM's does."""
    b = CellBuilder("nested", "nested", "")
    x, c_prev = b.input("x"), b.state("c")
    g = b.node("g", sigmoid(b.affine("z", "W", [c_prev, x], "b")))
    b.node("c", g * sympy.tanh(c_prev))
    cell = b.build(output="c")
    hidden = [n.target for n in cell.nodes if not n.show and isinstance(n, Elementwise)]
    assert hidden == ["tanh_c_prev"]
    assert not any(isinstance(f, sympy.tanh) for a in cell.backward.adjoints for f in a.expr.atoms(sympy.Function))


def test_relu_derivative_is_zero_at_zero() -> None:
    """The convention stated in the registry: step(0) = 0, as PyTorch."""
    b = CellBuilder("r", "r", "")
    x, c_prev = b.input("x"), b.state("c")
    b.node("c", relu(b.affine("z", "W", [c_prev, x], "b")))
    kernel = kernels.compile(b.build(output="c"))
    params = {"W": np.zeros((2, 3)), "b": np.zeros(2)}
    ys, cache = kernel.forward(params, np.ones((1, 1, 1)))
    grads = kernel.backward(cache, np.ones_like(ys))
    assert np.all(ys == 0) and np.all(grads["b"] == 0)


# -- the built-in cells and the registry ----------------------------------------------
@pytest.mark.parametrize("name", derive.names())
def test_prove_holds_for_the_built_in_cells(name: str) -> None:
    """``derive prove`` on a built-in cell (one step here; the two-step
    proofs against independent forwards are in test_proofs.py)."""
    checks = list(proof.prove(derive.cell(name), steps=(1,), sizes=(3,), kernel=kernels.load(name)))
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]


def test_entry_point_cells_are_listed_with_their_origin(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """A package's cell (entry-point group ``derive.cells``) is known by name
    and listed with where it comes from; it never shadows a built-in."""
    import importlib
    from importlib import metadata

    cells = importlib.import_module("derive.cells")  # the module (derive.cells is also a function)

    fake = [metadata.EntryPoint("vanilla", "derive.cells.rnn:build", "derive.cells"),
            metadata.EntryPoint("gru", "derive.cells.rnn:build", "derive.cells")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: fake if group == "derive.cells" else [])
    cells._registry.cache_clear()
    cells.cell.cache_clear()
    try:
        assert derive.names()[-1] == "vanilla" and derive.names().count("gru") == 1
        assert cells.origin("vanilla").kind == "entry point" and cells.origin("gru").kind == "built-in"
        assert derive.cell("vanilla").title == "Vanilla RNN"
        assert main(["list"]) == 0
        listing = capsys.readouterr().out.splitlines()
        assert any(line.startswith("vanilla") and "entry point" in line and "derive.cells.rnn:build" in line
                   for line in listing), listing
    finally:
        cells._registry.cache_clear()
        cells.cell.cache_clear()


# -- the same cells as text (.cell) ----------------------------------------------------


@pytest.mark.parametrize("name", USER_CELLS)
def test_cell_text_files_end_to_end(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The .cell twin of each Python cell, from outside the package: shown,
    built, run, finite differences, and the same forward and backward
    equations as the Python file."""
    file = tmp_path / f"{CELL_FILES[name]}.cell"
    shutil.copy(HERE / "cells" / file.name, file)
    assert main(["show", str(file), "--backward"]) == 0
    out = tmp_path / "k"
    assert main(["build", "--cell", str(file), "--out", str(out)]) == 0
    capsys.readouterr()
    text_cell, py_cell = derive.load_cell(file), derive.load_cell(HERE / "user_cells" / f"{name}.py")
    kernel = _import(out / f"{text_cell.name}.py")
    _assert_same_cell(kernel, kernels.compile(py_cell))
    errors = proof.finite_differences(kernel, seed=4)
    assert max(errors.values()) < 1e-6, errors


def test_the_readme_cell_files_work(tmp_path: Path) -> None:
    """The README's mgu.py and mgu.cell, as a reader copies them: the same
    cell, and it proves."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    python = re.search(r"```python\n(# mgu\.py.*?)```", readme, re.S).group(1)
    text = re.search(r"```text\n(# mgu\.cell.*?)```", readme, re.S).group(1)
    (tmp_path / "mgu.py").write_text(python, encoding="utf-8")
    (tmp_path / "mgu.cell").write_text(text, encoding="utf-8")
    from_python, from_text = derive.load_cell(tmp_path / "mgu.py"), derive.load_cell(tmp_path / "mgu.cell")
    _assert_same_cell(kernels.compile(from_text), kernels.compile(from_python))
    checks = list(proof.prove(from_text, steps=(1,), sizes=(2,)))
    assert all(c.ok for c in checks), [c.line() for c in checks]


def _assert_same_cell(mine, theirs) -> None:  # noqa: ANN001 - two kernel modules
    """Two cells written differently compute the same thing: same
    parameters, same outputs, final states and gradients on random input."""
    params = theirs.init_params(3, 4, seed=5)
    assert sorted(mine.PARAM_SHAPES) == sorted(theirs.PARAM_SHAPES) and mine.STATES == theirs.STATES
    xs = np.random.default_rng(5).standard_normal((5, 2, 3))
    ys_a, cache_a = mine.forward(params, xs)
    ys_b, cache_b = theirs.forward(params, xs)
    np.testing.assert_allclose(ys_a, ys_b, rtol=1e-13, atol=1e-14)
    dys = np.random.default_rng(6).standard_normal(ys_a.shape)
    grads_a, grads_b = mine.backward(cache_a, dys), theirs.backward(cache_b, dys)
    for key in grads_b:
        np.testing.assert_allclose(grads_a[key], grads_b[key], rtol=1e-12, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("name", USER_CELLS)
def test_lambdify_of_a_cell_file_agrees_with_its_kernel(name: str, outside: Path) -> None:
    """``Cell.lambdify()`` (per-element parameters included) against the
    generated kernel, over one step: forward values and every gradient."""
    cell = derive.load_cell(outside / f"{name}.py")
    step, kernel = cell.lambdify(), kernels.compile(cell)
    params = kernel.init_params(3, 4, seed=7)
    rng = np.random.default_rng(7)
    xs, state0 = rng.standard_normal((1, 2, 3)), {s: rng.standard_normal((2, 4)) for s in kernel.STATES}
    dys = rng.standard_normal((1, 2, 4))
    ys, cache = kernel.forward(params, xs, state0)
    grads = kernel.backward(cache, dys)
    values = step.forward(params, xs[0], state0)
    out = step.vjp(params, values, dys[0], {s: np.zeros((2, 4)) for s in kernel.STATES})
    np.testing.assert_allclose(values[cell.output], ys[0], rtol=1e-12, atol=1e-13)
    for key in params:
        np.testing.assert_allclose(out[key], grads[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_a_squared_denominator_stays_under_the_division() -> None:
    """δ of f/(f + i) has (f + i)² below; printed as a product it must stay
    whole under the division (a/((f + i)*(f + i)), never a/(f + i)*(f + i)).
    The kernel shares 1/(f + i) first; ``Cell.lambdify`` prints the derived
    expression as it is, and must agree with the kernel."""
    import sympy as sp

    from derive.render.numpy_kernel import KernelPrinter

    a, f, i = sp.symbols("a f i")
    assert KernelPrinter({}).doprint(a / (f + i) ** 2) == "a/((f + i)*(f + i))"
    b = CellBuilder("ratio", "ratio", "")
    x, c_prev = b.input("x"), b.state("c")
    G = b.node("f", sigmoid(b.affine("z_f", "W_f", [x, c_prev], "b_f")))
    H = b.node("i", sigmoid(b.affine("z_i", "W_i", [x], "b_i")))
    b.node("c", G / (G + H) * c_prev + H / (G + H))
    cell = b.build(output="c")
    kernel, step = kernels.compile(cell), cell.lambdify()
    params = kernel.init_params(2, 3, seed=8)
    rng = np.random.default_rng(8)
    xs, c0, dys = rng.standard_normal((1, 2, 2)), {"c": rng.standard_normal((2, 3))}, rng.standard_normal((1, 2, 3))
    ys, cache = kernel.forward(params, xs, c0)
    grads = kernel.backward(cache, dys)
    out = step.vjp(params, step.forward(params, xs[0], c0), dys[0], {"c": np.zeros((2, 3))})
    for key in params:
        np.testing.assert_allclose(out[key], grads[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_a_string_is_never_evaluated_as_an_expression() -> None:
    """``node(target, "…")`` would go through SymPy's string parser (eval):
    the builder takes SymPy objects and numbers only."""
    b = CellBuilder("s", "s", "", source="s.py")
    b.input("x")
    b.state("c")
    with pytest.raises(CellError, match="node 'c': expected a SymPy expression, got str"):
        b.node("c", "c_prev + __import__('os').getpid()")


@pytest.mark.parametrize("name", ["Z_t", "xs1", "a_chunk", "g_next", "t0", "g_chunk", "j", "b", "one", "carried_c", "shared0", "zero", "k_1_6",
                                  "flat", "tile_rows"])
def test_a_name_a_kernel_binds_is_refused(name: str) -> None:
    """A vector named like a local of the loop, the scan or the Numba kernel
    would be overwritten by it (a vector j broke the Numba kernel's loop
    over j): the builder refuses the name."""
    b = CellBuilder("bad", "bad", "", source="bad_cell.py")
    x, c_prev = b.input("x"), b.state("c")
    with pytest.raises(CellError, match=f"the name '{name}' is reserved"):
        b.node(name, sigmoid(b.affine("z_g", "W_g", [x], "b_g")))
    del c_prev


@pytest.mark.parametrize("name", ["biases", "project", "weight_gradient", "all_finite", "warnings", "block_sums", "finite"])
def test_a_parameter_named_like_a_numba_wrapper_local_is_refused(name: str) -> None:
    """The Numba kernels' wrappers unpack the parameters as locals and then
    call the runtime's functions by name: a bias named ``project`` would
    shadow the function it calls."""
    b = CellBuilder("bad", "bad", "", source="bad_cell.py")
    x, c_prev = b.input("x"), b.state("c")
    with pytest.raises(CellError, match=f"the name '{name}' is reserved"):
        b.affine("z", "W", [x, c_prev], name)


@pytest.mark.parametrize("kind", ["bias", "weight", "parameter", "vector"])
def test_a_name_ending_in_next_is_refused(kind: str) -> None:
    """d_<name> is the kernels' name for the gradient of a parameter or a
    vector, and d_<s>_next the gradient carried back to state s: a bias
    named c_next had the NumPy and Numba kernels return its gradient as δc0."""
    b = CellBuilder("bad", "bad", "", source="bad_cell.py")
    x, c_prev = b.input("x"), b.state("c")
    with pytest.raises(CellError, match="the name 'c_next' is reserved"):
        if kind == "bias":
            b.affine("z", "W", [x, c_prev], "c_next")
        elif kind == "weight":
            b.affine("z", "c_next", [x, c_prev], "b")
        elif kind == "parameter":
            b.param("c_next")
        else:
            b.node("c_next", c_prev * 2)
