"""``derive build`` / ``derive check``: generated files are reproducible and
any drift from the equations is caught and named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import derive
from derive import artefacts

ROOT = Path(__file__).resolve().parent.parent


def derive_cli(*args: str, hashseed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, env=env, check=False)


def test_committed_files_are_up_to_date() -> None:
    assert artefacts.check(ROOT) == []


def test_build_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):  # the pages, from which the notebooks are generated
        (root / "docs").mkdir(parents=True)
        for page in (ROOT / "docs").glob("*.md"):
            shutil.copy(page, root / "docs" / page.name)
    assert derive_cli("build", "--root", str(a), hashseed="1").returncode == 0
    assert derive_cli("build", "--root", str(b), hashseed="2").returncode == 0
    for rel in artefacts.artefacts():
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert (a / rel).read_bytes() == (ROOT / rel).read_bytes(), rel


@pytest.mark.parametrize("where", ["derive/kernels", "derive/kernels/numba"], ids=["numpy", "numba"])
def test_check_names_an_edited_kernel(where: str, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(ROOT / "derive" / "kernels", root / "derive" / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    assert derive_cli("check", "--root", str(root)).returncode == 0
    kernel = root / where / "gru.py"
    text = kernel.read_text()
    assert "d_h = Gu*d_c" in text
    kernel.write_text(text.replace("d_h = Gu*d_c", "d_h = 0.99*Gu*d_c"))
    out = derive_cli("check", "--root", str(root))
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == f"stale: {where}/gru.py"
    assert "lstm.py" not in out.stderr
    (root / where / "lstm.py").unlink()
    assert f"missing: {where}/lstm.py" in derive_cli("check", "--root", str(root)).stderr


def test_a_changed_equation_changes_the_kernel(monkeypatch) -> None:  # noqa: ANN001
    """The kernel is generated from the cell: altering an equation alters it."""
    import sympy

    from derive.cell import CellBuilder
    from derive.functions import sigmoid
    from derive.render.numpy_kernel import generate

    def variant(mix_keeps_candidate: bool) -> str:
        b = CellBuilder("gru_simple", "Simplified GRU", "")
        x, c_prev = b.input("x"), b.state("c")
        Gu = b.node("Gu", sigmoid(b.affine("z_u", "W_u", [c_prev, x], "b_u")), latex="G_u")
        h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [c_prev, x], "b_h")))
        mix = Gu * h + (1 - Gu) * c_prev if mix_keeps_candidate else (1 - Gu) * h + Gu * c_prev
        b.node("c", mix)
        return generate(b.build(output="c"))

    assert variant(True) == generate(derive.cell("gru_simple"))
    changed = variant(False)
    assert changed != variant(True)
    # the mixed-in direction flips: δh now reads δc ⊙ (1 − G_u), which δz_u shares
    assert "d_h = d_c*(1 - Gu)" in changed and "d_z_u = np.multiply(d_h, mix_c, out=dZ_t[0])" in changed


def test_only_a_true_gate_mix_is_computed_in_three_passes() -> None:
    """g ⊙ v + (1 − g) ⊙ u becomes u + g ⊙ (v − u); anything else keeps its
    own expression (the LSTM's G_f ⊙ c + G_i ⊙ h is not a mix)."""
    import sympy

    from derive.render.numpy_kernel import generate
    from derive.render.reuse import convex as _convex

    g, v, u, w = sympy.symbols("g v u w")
    assert _convex(g * v + (1 - g) * u) == (g, v, u)
    assert _convex((1 - g) * u + v * g) == (g, v, u)
    assert _convex(g * v + w * u) is None
    assert _convex(g * v + (1 - w) * u) is None
    assert _convex(g * v + (1 - g) * u + w) is None
    gru = generate(derive.cell("gru"))
    assert ("c = np.subtract(h, c_prev, out=c_seq[t + 1])\n"
            "        mix_c = np.multiply(c, Gu, out=mix_c_seq[t])  # kept for backward\n"
            "        np.add(c_prev, mix_c, out=c)") in gru
    assert "three passes" not in generate(derive.cell("lstm"))


def test_the_kernel_step_computes_the_derived_equations() -> None:
    """The backward step the kernels compute (forward products reused,
    single-use adjoints folded, see derive/render/reuse.py) is the derived
    one, exactly: expanding the products and the folds gives back every
    derived equation; and for the gated cells it needs fewer operations."""
    import sympy

    from derive.graph import adjoint
    from derive.render.reuse import candidates, plan

    for name in derive.NAMES:
        cell = derive.cell(name)
        bw = cell.backward
        keep = {g.d_affine.name for g in bw.weight_grads}
        step = plan(cell, keep)
        back = {sympy.Symbol(p.name): p.expr for p in candidates(cell) if p.kind != "node"}
        derived = {a.target: a.expr for a in bw.adjoints if a.target not in cell.inputs}
        folded = {adjoint(t): derived[t] for t in step.folded_into}
        for target, expr in step.code.items():
            if expr is None:
                assert target in step.folded_into
                continue
            nodes = {sympy.Symbol(p.name): p.expr for p in candidates(cell) if p.kind == "node"}
            # a node product (r_c) may stand for its own definition in the kernel's code
            mine = expr.xreplace(back)
            theirs = derived[target].xreplace(folded)
            assert sympy.expand(mine.xreplace(nodes) - theirs.xreplace(nodes)) == 0, (name, target)
        before = sum(sympy.count_ops(e) for e in derived.values())
        after = sum(sympy.count_ops(e) for e in step.code.values() if e is not None)
        rewritten = bool(step.products or step.folded_into)  # the plan changed something: it must pay
        assert after < before if rewritten else after == before, (name, before, after)


def test_matmul_operands_are_row_major(monkeypatch) -> None:  # noqa: ANN001
    """Every operand the kernels give ``np.matmul`` is made of row-major
    matrices (unit stride along the last axis), the only exception being the
    δz of all steps read transposed by a weight-gradient GEMM (δzᵀ × parts,
    BLAS's usual transposed-A product over T·B). ``np.stack`` of transposed
    weights keeps their column order; the per-step batched product then read
    every block about twice as slowly: this test catches it."""
    import numpy as np

    from derive import kernels

    T, B, n_x, n_h = 4, 2, 3, 5
    rng = np.random.default_rng(0)
    stacks: set[str] = set()
    real = np.matmul

    def checking_matmul(a, b, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        for operand in (a, b):
            if operand.ndim == 3:
                stacks.add(name)
            if operand.strides[-1] != operand.itemsize:
                assert operand.ndim == 2 and operand.shape[1] == T * B, (name, operand.shape, operand.strides)
        return real(a, b, *args, **kwargs)

    for name in derive.NAMES:
        kernel = kernels.load(name)
        monkeypatch.setattr(kernel.np, "matmul", checking_matmul)
        params = kernel.init_params(n_x, n_h, seed=0, dtype=np.float64)
        ys, cache = kernel.forward(params, rng.standard_normal((T, B, n_x)))
        kernel.backward(cache, np.ones(ys.shape))
        monkeypatch.undo()
    assert stacks == set(derive.NAMES)  # every kernel's input projection is a stack of blocks: they were checked
