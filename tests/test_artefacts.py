"""``derive build`` / ``derive check``: generated files are reproducible and
any drift from the equations is caught and named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert derive_cli("build", "--root", str(a), hashseed="1").returncode == 0
    assert derive_cli("build", "--root", str(b), hashseed="2").returncode == 0
    for rel in artefacts.artefacts():
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert (a / rel).read_bytes() == (ROOT / rel).read_bytes(), rel


def test_check_names_an_edited_kernel(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(ROOT / "derive" / "kernels", root / "derive" / "kernels")
    assert derive_cli("check", "--root", str(root)).returncode == 0
    kernel = root / "derive" / "kernels" / "gru.py"
    kernel.write_text(kernel.read_text().replace("d_h = Gu*d_c", "d_h = 0.99*Gu*d_c"))
    out = derive_cli("check", "--root", str(root))
    assert out.returncode == 1
    assert "stale: derive/kernels/gru.py" in out.stderr
    assert "lstm.py" not in out.stderr
    (root / "derive" / "kernels" / "lstm.py").unlink()
    assert "missing: derive/kernels/lstm.py" in derive_cli("check", "--root", str(root)).stderr


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
    assert "shared0 = 1 - Gu" in changed and "d_h = d_c*shared0" in changed


def test_only_a_true_gate_mix_is_computed_in_three_passes() -> None:
    """g ⊙ v + (1 − g) ⊙ u becomes u + g ⊙ (v − u); anything else keeps its
    own expression (the LSTM's G_f ⊙ c + G_i ⊙ h is not a mix)."""
    import sympy

    from derive.render.numpy_kernel import _convex, generate

    g, v, u, w = sympy.symbols("g v u w")
    assert _convex(g * v + (1 - g) * u) == (g, v, u)
    assert _convex((1 - g) * u + v * g) == (g, v, u)
    assert _convex(g * v + w * u) is None
    assert _convex(g * v + (1 - w) * u) is None
    assert _convex(g * v + (1 - g) * u + w) is None
    gru = generate(derive.cell("gru"))
    assert "c = np.subtract(h, c_prev, out=c_seq[t + 1])\n        c *= Gu\n        c += c_prev" in gru
    assert "three passes" not in generate(derive.cell("lstm"))
