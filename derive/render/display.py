"""The equations of a cell as a reader sees them, for every printer.

Forward: hidden nodes (pre-activations, Gr ⊙ c(t−1), tanh(c)) substituted
into their consumers. Backward: the derived adjoints, with the adjoints of
hidden non-pre-activation nodes inlined too (δ(Gr ⊙ c) has no name on
paper), then the weight and bias gradients as sums over time. Jacobians:
∂s(t)/∂s′(t−1) as sums of diag(·) and weight blocks.
"""

from __future__ import annotations

from typing import Literal

import sympy

from ..cell import Cell
from ..graph import Elementwise, adjoint
from .naming import is_preactivation

Which = Literal["forward", "backward", "jacobian", "all"]
WHICH: tuple[str, ...] = ("forward", "backward", "jacobian", "all")


class SumOverTime(sympy.Function):
    """Σ_{t=1}^{T} of its argument."""


class OuterT(sympy.Function):
    """``OuterT(δz, p1, p2, …)`` is δz [p1, p2, …]ᵀ (sums over the batch)."""


class BatchSum(sympy.Function):
    """``BatchSum(δz)`` is δz 1_B: δz summed over the batch."""


class Partial(sympy.Function):
    """``Partial(s, s_prev)`` is the Jacobian ∂s(t)/∂s′(t−1)."""


Line = tuple[sympy.Expr, sympy.Expr]


def forward_lines(cell: Cell) -> list[Line]:
    """``(lhs, rhs)`` for every shown forward equation, in order."""
    return [(eq.lhs, eq.rhs) for eq in cell.shown_equations()]


def equation_line(cell: Cell, target: str) -> Line:
    """The shown forward equation that computes ``target``."""
    for lhs, rhs in forward_lines(cell):
        if lhs.name == target:
            return lhs, rhs
    shown = [lhs.name for lhs, _ in forward_lines(cell)]
    raise KeyError(f"cell {cell.name!r} shows no equation for {target!r}; it shows {shown}")


def backward_lines(cell: Cell) -> list[Line]:
    """The derived backward step: adjoints in the order they are computed,
    then the gradients of the weights and biases."""
    inline: dict[sympy.Symbol, sympy.Expr] = {}
    lines: list[Line] = []
    for a in cell.backward.adjoints:
        expr = cell.expand_hidden(a.expr.xreplace(inline))
        node = _elementwise(cell, a.target)
        if node is not None and not node.show and not is_preactivation(a.target):
            inline[a.symbol] = expr
            continue
        lines.append((a.symbol, expr))
    for w in cell.backward.weight_grads:
        parts = [cell.expand_hidden(sympy.Symbol(p)) for p in w.parts]
        lines.append((adjoint(w.weight), SumOverTime(OuterT(w.d_affine, *parts))))
    for b in cell.backward.bias_grads:
        lines.append((adjoint(b.bias), SumOverTime(BatchSum(b.d_affine))))
    for g in cell.backward.param_grads:  # a per-element parameter: its step term, summed
        lines.append((adjoint(g.param), SumOverTime(BatchSum(cell.expand_hidden(g.expr.xreplace(inline))))))
    return lines


def jacobian_lines(cell: Cell) -> list[Line]:
    """∂s(t)/∂s′(t−1) for every non-zero pair of states."""
    return [
        (Partial(sympy.Symbol(j.of), sympy.Symbol(j.wrt)), cell.expand_hidden(j.expr)) for j in cell.jacobians
    ]


def lines(cell: Cell, which: Which) -> list[Line]:
    """The lines of one section (or all of them, forward first)."""
    if which == "forward":
        return forward_lines(cell)
    if which == "backward":
        return backward_lines(cell)
    if which == "jacobian":
        return jacobian_lines(cell)
    if which == "all":
        return forward_lines(cell) + backward_lines(cell)
    raise ValueError(f"which: expected one of {', '.join(WHICH)}, got {which!r}")


def _elementwise(cell: Cell, name: str) -> Elementwise | None:
    for node in cell.nodes:
        if node.target == name and isinstance(node, Elementwise):
            return node
    return None
