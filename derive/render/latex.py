"""LaTeX of a cell's equations, in the thread's notation, for KaTeX.

A SymPy ``LatexPrinter`` subclass that overrides only what this notation
needs: vectors with a time superscript, products of vectors as ⊙, σ, weight
blocks W_hcᵀ, sums over time and the batch. Only macros KaTeX supports.
"""

from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE, precedence

from ..cell import Cell
from ..derivation import Block, Diag
from .. import functions
from ..functions import sigmoid
from ..graph import Concat, WeightT
from . import display
from .naming import Label, block_latex, label


class _ReadingOrder:
    """Sums printed in the notation's reading order (:func:`ordered_terms`),
    shared by the LaTeX and text printers."""

    def _print_Add(self, expr: sympy.Add, order: str | None = None) -> str:
        terms = ordered_terms(expr)
        out = self._print(terms[0])  # type: ignore[attr-defined]
        for t in terms[1:]:
            s = self._print(t)  # type: ignore[attr-defined]
            out += " - " + s[1:] if s.startswith("-") else " + " + s
        return out


class CellLatexPrinter(_ReadingOrder, LatexPrinter):
    """Prints one cell's symbols and operations the way the site shows them."""

    printmethod = "_derive_latex"

    def __init__(self, cell: Cell) -> None:
        super().__init__({"order": "none"})
        self.cell = cell

    # -- names -----------------------------------------------------------
    def _print_Symbol(self, expr: sympy.Symbol, style: str = "plain") -> str:
        return format_label(label(self.cell, expr.name))

    # -- elementwise algebra --------------------------------------------
    def _print_Mul(self, expr: sympy.Mul) -> str:
        if not expr.is_commutative:  # a Jacobian path: matrix products, in order
            return " ".join(self._factor(f) for f in expr.args)
        coeff, rest = expr.as_coeff_Mul()
        if rest == 1:
            return self._print(coeff)
        numer, denom = sympy.fraction(rest, exact=True)
        if denom != 1:  # an element-wise division (minLSTM's G_f / (G_f + G_i)): a fraction
            body = r"\frac{" + self._print(numer) + "}{" + self._print(denom) + "}"
        else:
            body = r" \odot ".join(self._factor(f) for f in ordered_factors(rest))
        if coeff == 1:
            return body
        if coeff == -1:
            return "-" + body
        return self._print(coeff) + r" \, " + body

    def _factor(self, f: sympy.Expr) -> str:
        if isinstance(f, (WeightT, Concat)) or precedence(f) < PRECEDENCE["Mul"]:
            return r"\left(" + self._print(f) + r"\right)"
        return self._print(f)

    def _print_Pow(self, expr: sympy.Pow) -> str:
        base, exp = expr.args
        if exp.is_Number and exp < 0:  # 1 / v^k, element-wise
            return r"\frac{1}{" + self._print(sympy.Pow(base, -exp)) + "}"
        if isinstance(base, sympy.Symbol):
            return r"\left(" + self._print(base) + r"\right)^{" + self._print(exp) + "}"
        return super()._print_Pow(expr)

    def _print_activation(self, entry: functions.Activation, expr: sympy.Function, exp: str | None = None) -> str:
        power = f"^{{{exp}}}" if exp else ""
        return entry.latex + power + r"\left(" + self._print(expr.args[0]) + r"\right)"

    # -- matrix operations ----------------------------------------------
    def _print_Concat(self, expr: Concat) -> str:
        weight, *parts = expr.args
        if len(parts) == 1:
            return self._print(weight) + " " + self._print(parts[0])
        return self._print(weight) + r" \left[" + ", ".join(self._print(p) for p in parts) + r"\right]"

    def _print_WeightT(self, expr: WeightT) -> str:
        return block_latex(self.cell, expr.weight, expr.part) + r"^{\top} " + self._print(expr.adjoint)

    def _print_SumOverTime(self, expr: display.SumOverTime) -> str:
        return r"\sum_{t=1}^{T} " + self._print(expr.args[0])

    def _print_OuterT(self, expr: display.OuterT) -> str:
        d, *parts = expr.args
        if len(parts) == 1:
            return self._print(d) + r" \, {" + self._factor(parts[0]) + r"}^{\top}"
        return self._print(d) + r" \left[" + ", ".join(self._print(p) for p in parts) + r"\right]^{\top}"

    def _print_BatchSum(self, expr: display.BatchSum) -> str:
        inner = self._print(expr.args[0])
        if not expr.args[0].is_Symbol:  # a per-element parameter's term: (δc ⊙ c) 1_B
            inner = r"\left(" + inner + r"\right)"
        return inner + r" \, \mathbf{1}_{B}"

    def _print_Partial(self, expr: display.Partial) -> str:
        of, wrt = expr.args
        return r"\frac{\partial " + self._print(of) + r"}{\partial " + self._print(wrt) + "}"

    def _print_Diag(self, expr: Diag) -> str:
        return r"\operatorname{diag}\left(" + self._print(expr.args[0]) + r"\right)"

    def _print_Block(self, expr: Block) -> str:
        return block_latex(self.cell, expr.args[0].name, expr.args[1].name)


functions.install_printers(CellLatexPrinter, CellLatexPrinter._print_activation)


def format_label(lab: Label) -> str:
    """δG_r^{(t)}, c^{(t-1)}, δc^{(t)}_{t+1}, W_{h}."""
    out = (r"\delta " if lab.delta else "") + lab.base
    if lab.time is not None:
        out = ("{" + out + "}" if "^" in out else out) + "^{(" + lab.time + ")}"
    if lab.via is not None:
        out += "_{" + lab.via + "}"
    return out


def ordered_factors(expr: sympy.Expr) -> list[sympy.Expr]:
    """Factors of a product in reading order: adjoints δ first, then gates
    (G_*), then the rest — δc ⊙ (1 − G_u), G_u ⊙ h."""

    def rank(f: sympy.Expr) -> tuple[int, int, str]:
        names = {s.name for s in f.free_symbols}
        if isinstance(f, sympy.Symbol) and f.name.startswith("d_"):
            return (0, 0, f.name)
        compound = 0 if isinstance(f, sympy.Symbol) else 1
        if any(n.startswith("G") for n in names):
            return (1, compound, sympy.srepr(f))
        return (2, compound, sympy.srepr(f))

    factors = list(sympy.Mul.make_args(expr))
    if any(not f.is_commutative for f in factors):
        return factors  # matrix products keep their order
    return sorted(factors, key=rank)


def ordered_terms(expr: sympy.Add) -> list[sympy.Expr]:
    """Terms of a sum in a fixed reading order: constants first (1 − G_u),
    positive terms before negative ones, a matrix product before its bias,
    then by their structure."""

    def rank(t: sympy.Expr) -> tuple[int, int, int, str]:
        kind = 0 if isinstance(t, Concat) else 1 if isinstance(t, sympy.Symbol) else 2  # W [c, x] + b first
        return (0 if t.is_number else 1, 1 if t.could_extract_minus_sign() else 0, kind, sympy.srepr(t))

    return sorted(sympy.Add.make_args(expr), key=rank)


def _line(printer: CellLatexPrinter, lhs: sympy.Expr, rhs: sympy.Expr) -> str:
    return printer.doprint(lhs) + " &= " + printer.doprint(rhs)


def _term_per_line(printer: CellLatexPrinter, lhs: sympy.Expr, rhs: sympy.Expr) -> str:
    r"""``lhs &= t_1`` then ``&\quad + t_k`` on a line of its own for each
    further term of the sum ``rhs`` (in reading order): a long Jacobian
    stays as narrow as its widest term instead of running off the page."""
    if not isinstance(rhs, sympy.Add):
        return _line(printer, lhs, rhs)
    terms = [printer.doprint(t) for t in ordered_terms(rhs)]
    out = printer.doprint(lhs) + " &= " + terms[0]
    for t in terms[1:]:
        sign, body = ("-", t[1:].lstrip()) if t.startswith("-") else ("+", t)
        out += r" \\" + "\n" + r"&\quad " + sign + " " + body
    return out


def cell_latex(cell: Cell, which: display.Which = "all") -> str:
    """One ``aligned`` block with the equations of ``which``. The Jacobians
    put each term of a sum on its own line (they are the longest lines)."""
    printer = CellLatexPrinter(cell)
    line = _term_per_line if which == "jacobian" else _line
    body = r" \\" + "\n"
    return r"\begin{aligned}" + "\n" + body.join(line(printer, l, r) for l, r in display.lines(cell, which)) + "\n" + r"\end{aligned}"


def equation_latex(cell: Cell, target: str) -> str:
    """The one forward equation computing ``target``, as ``lhs = rhs``."""
    printer = CellLatexPrinter(cell)
    lhs, rhs = display.equation_line(cell, target)
    return printer.doprint(lhs) + " = " + printer.doprint(rhs)


def sigmoid_latex() -> str:
    """σ's definition and the derivative identities the derivation uses,
    printed from the SymPy objects themselves."""
    z = sympy.Symbol("z")
    s = sigmoid(z)
    definition = sympy.latex(s.rewrite(sympy.exp))
    d_sigmoid = sympy.latex(sympy.diff(s, z).subs(s, sympy.Symbol(r"\sigma(z)")))
    d_tanh = sympy.latex(sympy.diff(sympy.tanh(z), z).subs(sympy.tanh(z), sympy.Symbol(r"\tanh(z)")))
    return (
        r"\begin{aligned}"
        + "\n"
        + r"\sigma(z) &= "
        + definition
        + r" \\"
        + "\n"
        + r"\sigma'(z) &= "
        + d_sigmoid
        + r" \\"
        + "\n"
        + r"\tanh'(z) &= "
        + d_tanh
        + "\n"
        + r"\end{aligned}"
    )
