"""The ``derive`` command as a user runs it, and the public API's errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import derive

# the macros KaTeX supports that our LaTeX may use (https://katex.org/docs/supported)
KATEX_MACROS = {
    "begin", "end", "left", "right", "odot", "sigma", "tanh", "top", "delta", "sum", "mathbf",
    "frac", "partial", "operatorname", "quad", ",",
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, check=False, env=env
    )


def test_list_names_every_cell() -> None:
    out = run("list")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(derive.NAMES)


def test_show_backward_latex_is_byte_identical_across_processes() -> None:
    a = run("show", "gru", "--backward", "--latex", env={**os.environ, "PYTHONHASHSEED": "1"})
    b = run("show", "gru", "--backward", "--latex", env={**os.environ, "PYTHONHASHSEED": "2"})
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    assert r"\delta W_{h}" in a.stdout and r"\odot" in a.stdout


@pytest.mark.parametrize("name", derive.NAMES)
@pytest.mark.parametrize("which", ["forward", "backward", "jacobian"])
def test_latex_uses_only_katex_macros(name: str, which: str) -> None:
    tex = derive.cell(name).latex(which)
    macros = set(re.findall(r"\\([A-Za-z]+|,)", tex))
    assert macros <= KATEX_MACROS, f"{name} {which}: macros outside KaTeX's list: {macros - KATEX_MACROS}"
    assert tex.count(r"\left") == tex.count(r"\right")
    assert "^{(t)}^" not in tex and ")}^{" not in tex.replace(r"\right)}^{", "")  # no double superscript


def test_show_text_forward_reads_in_the_thread_notation() -> None:
    out = run("show", "gru")
    assert out.returncode == 0
    assert "h(t) = tanh(W_h [G_r(t) ⊙ c(t-1), x(t)] + b_h)" in out.stdout
    assert "c(t) = G_u(t) ⊙ h(t) + (1 - G_u(t)) ⊙ c(t-1)" in out.stdout


def test_jupyter_display_is_the_forward_latex() -> None:
    cell = derive.cell("lstm")
    assert cell._repr_latex_() == "$$" + cell.latex("forward") + "$$"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "nope"), f"unknown cell 'nope'; known cells: {', '.join(derive.NAMES)}"),
        (("show",), "the following arguments are required: cell"),
        (("show", "gru", "--backward", "--jacobian"), "not allowed with argument"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...], needle: str) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.startswith("derive")]) == 1


def test_unknown_cell_error_lists_the_known_ones() -> None:
    with pytest.raises(KeyError) as err:
        derive.cell("grux")
    assert all(name in str(err.value) for name in derive.NAMES)
    with pytest.raises(ValueError):
        derive.cell("grux")


@pytest.mark.parametrize("command", ["list", "show", "build", "check", "experiment"])
def test_every_command_has_help(command: str) -> None:
    out = run(command, "--help")
    assert out.returncode == 0
    assert "usage: derive" in out.stdout


def _copy_checkout(tmp_path) -> "Path":  # noqa: ANN001
    """A minimal checkout: the generated kernels as they are now."""
    from pathlib import Path

    from derive.artefacts import artefacts, default_root

    root = Path(tmp_path) / "checkout"
    for rel in artefacts():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((default_root() / rel).read_bytes())
    return root


def test_build_reports_only_what_it_changed(tmp_path) -> None:  # noqa: ANN001
    root = _copy_checkout(tmp_path)
    quiet = run("build", "--root", str(root))
    assert quiet.returncode == 0 and "wrote" not in quiet.stdout and "up to date" in quiet.stdout
    kernel = root / "derive" / "kernels" / "gru.py"
    kernel.write_bytes(kernel.read_bytes().replace(b"\n", b"\r\n"))  # a checkout with CRLF line endings
    stale = run("check", "--root", str(root))
    assert stale.returncode == 1 and "stale: derive/kernels/gru.py" in stale.stderr
    fixed = run("build", "--root", str(root))
    assert fixed.stdout.splitlines() == [f"wrote {kernel}"]
    assert b"\r\n" not in kernel.read_bytes()
    assert run("check", "--root", str(root)).returncode == 0


def test_build_in_a_read_only_checkout_says_so_in_one_line(tmp_path) -> None:  # noqa: ANN001
    from pathlib import Path

    if os.geteuid() == 0:  # root writes through file modes: /sys refuses everyone
        root = Path("/sys/derive-checkout")
    else:
        root = _copy_checkout(tmp_path)
        (root / "derive" / "kernels" / "gru.py").write_text("stale\n", encoding="utf-8")
        for d in (root / "derive" / "kernels", root / "derive" / "kernels" / "gru.py"):
            d.chmod(0o555 if d.is_dir() else 0o444)
    out = run("build", "--root", str(root))
    assert out.returncode == 1
    assert out.stderr.startswith("derive: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr and str(root) in out.stderr


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_list_and_show_on_a_non_utf8_stdout(encoding: str) -> None:
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    for args in (("list",), ("show", "lstm")):
        out = run(*args, env=env)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert "lstm" in out.stdout
