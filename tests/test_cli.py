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
