"""Plain-text equations for the terminal: ``G_r(t) = σ(W_r [c(t-1), x(t)] + b_r)``.

A SymPy ``StrPrinter`` subclass with the same notation as the LaTeX
renderer (same labels, same factor and term order), in Unicode.
"""

from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from ..cell import Cell
from ..derivation import Block, Diag
from .. import functions
from ..graph import Concat, WeightT
from . import display
from .latex import _ReadingOrder, ordered_factors
from .naming import block_latex, label

_HEADINGS = {"forward": "forward", "backward": "backward (one step of BPTT)", "jacobian": "state Jacobians"}


class CellTextPrinter(_ReadingOrder, StrPrinter):
    """Prints one cell's symbols and operations as readable Unicode text."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        lab = label(self.cell, expr.name)
        out = ("δ" if lab.delta else "") + lab.base.replace("{", "").replace("}", "")
        if lab.time is not None:
            out += f"({lab.time})"
        if lab.via is not None:
            out += f"[via {lab.via}]"
        return out

    def _factor(self, f: sympy.Expr) -> str:
        if isinstance(f, (WeightT, Concat)) or precedence(f) < PRECEDENCE["Mul"]:
            return "(" + self._print(f) + ")"
        return self._print(f)

    def _print_Mul(self, expr: sympy.Mul) -> str:
        if not expr.is_commutative:
            return " ".join(self._factor(f) for f in expr.args)
        coeff, rest = expr.as_coeff_Mul()
        if rest == 1:
            return self._print(coeff)
        body = " ⊙ ".join(self._factor(f) for f in ordered_factors(rest))
        return body if coeff == 1 else "-" + body if coeff == -1 else f"{self._print(coeff)} {body}"

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        inner = self._print(base)
        if not isinstance(base, sympy.Symbol):
            inner = "(" + inner + ")"
        return inner + ("²" if exp == 2 else f"^{self._print(exp)}")

    def _print_activation(self, entry: functions.Activation, expr: sympy.Function) -> str:
        return entry.text + "(" + self._print(expr.args[0]) + ")"

    def _print_Concat(self, expr: Concat) -> str:
        weight, *parts = expr.args
        if len(parts) == 1:
            return self._print(weight) + " " + self._print(parts[0])
        return self._print(weight) + " [" + ", ".join(self._print(p) for p in parts) + "]"

    def _block(self, weight: str, part: str) -> str:
        return block_latex(self.cell, weight, part).replace("{", "").replace("}", "")

    def _print_WeightT(self, expr: WeightT) -> str:
        return self._block(expr.weight, expr.part) + "ᵀ " + self._print(expr.adjoint)

    def _print_SumOverTime(self, expr: display.SumOverTime) -> str:
        return "Σ_t " + self._print(expr.args[0])

    def _print_OuterT(self, expr: display.OuterT) -> str:
        d, *parts = expr.args
        return self._print(d) + " [" + ", ".join(self._print(p) for p in parts) + "]ᵀ"

    def _print_BatchSum(self, expr: display.BatchSum) -> str:
        return self._print(expr.args[0]) + " 1_B"

    def _print_Partial(self, expr: display.Partial) -> str:
        of, wrt = expr.args
        return f"∂{self._print(of)}/∂{self._print(wrt)}"

    def _print_Diag(self, expr: Diag) -> str:
        return "diag(" + self._print(expr.args[0]) + ")"

    def _print_Block(self, expr: Block) -> str:
        return self._block(expr.args[0].name, expr.args[1].name)


functions.install_printers(CellTextPrinter, CellTextPrinter._print_activation)


def cell_text(cell: Cell, which: display.Which = "all") -> str:
    """The equations of ``which`` as text, one per line, under a heading."""
    printer = CellTextPrinter(cell)
    sections = ("forward", "backward") if which == "all" else (which,)
    out: list[str] = [f"{cell.name}: {cell.title}"]
    for section in sections:
        out.append(f"  {_HEADINGS[section]}:")
        out += [f"    {printer.doprint(l)} = {printer.doprint(r)}" for l, r in display.lines(cell, section)]
    return "\n".join(out)
