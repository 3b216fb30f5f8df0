"""The two kinds of node a cell is made of, each with its own VJP rule.

A cell's step is an ordered list of assignments over *vectors* (a small DAG):

* :class:`Affine` — ``z = W [p1; p2; …] + b``: one matrix acting on the
  concatenation of some vectors, as the thread writes ``W [c(t-1), x(t)]``;
* :class:`Elementwise` — ``v = f(u, w, …)``: a SymPy expression in which
  every vector is treated as a scalar, products being Hadamard products ⊙.

Each kind carries its backward rule next to its definition (as in
micrograd): given the adjoint ``δv`` of its output, it returns the
contribution to the adjoint of each of its arguments. ``derivation.py`` is
the short walk that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sympy
from sympy.core.symbol import Str

from . import functions

Role = Literal["input", "state_prev", "node", "carried_in", "output_grad"]
Size = Literal["n_x", "n_h"]


@dataclass(frozen=True)
class Vector:
    """A vector quantity of one time step (a column of size ``n_x`` or ``n_h``).

    ``latex`` is its base name in the thread's notation (``G_r``, ``c``),
    ``time`` its offset from the current step (0 for t, −1 for t−1) and
    ``block`` the label of the weight columns that act on it
    (``c`` for c(t−1) and for Gr ⊙ c(t−1): ``W_h = [W_hc, W_hx]``).
    """

    name: str
    latex: str
    size: Size
    role: Role
    time: int = 0
    block: str = ""
    text: str = ""

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name)


@dataclass(frozen=True)
class Param:
    """A learned parameter: a matrix on a concatenation, a bias, or a
    per-element (diagonal) vector ``p`` used as ``p ⊙ v`` in an element-wise
    node (a peephole, IndRNN's recurrent weights)."""

    name: str
    latex: str
    rows: Size
    cols: tuple[Size, ...]  # () for a vector: a bias or a per-element parameter
    per_element: bool = False

    @property
    def is_bias(self) -> bool:
        """Whether the parameter is a vector of shape (n_h,) (a bias or a per-element parameter)."""
        return not self.cols


def adjoint(name: str) -> sympy.Symbol:
    """The symbol of δ``name``: the gradient of the loss with respect to it."""
    return sympy.Symbol("d_" + name)


class WeightT(sympy.Function):
    """``WeightT(W, p, δz)`` is ``W_pᵀ δz``: the columns of ``W`` that act on
    part ``p``, transposed, times the adjoint ``δz``.

    An opaque atom for the elementwise algebra of adjoints: it is a vector
    that only the renderers expand (a matrix product in NumPy, ``W_{hc}^⊤``
    in LaTeX).
    """

    is_commutative = True  # a vector, multiplied elementwise like any other
    nargs = 3  # (Str weight, Str part, adjoint): names, not symbols, so substitution leaves them be

    @property
    def weight(self) -> str:
        return self.args[0].name

    @property
    def part(self) -> str:
        return self.args[1].name

    @property
    def adjoint(self) -> sympy.Symbol:
        return self.args[2]


@dataclass(frozen=True)
class Affine:
    """``target = weight [parts…] + bias``."""

    target: str
    weight: str
    parts: tuple[str, ...]
    bias: str | None = None
    show: bool = False  # pre-activations are shown inside their consumer

    def expr(self) -> sympy.Expr:
        """The node as a formal expression, for display and substitution."""
        return Concat(sympy.Symbol(self.weight), *(sympy.Symbol(p) for p in self.parts)) + (
            sympy.Symbol(self.bias) if self.bias else 0
        )

    def vjp(self, d_target: sympy.Symbol) -> dict[str, sympy.Expr]:
        """δp += W_pᵀ δz for each part p (the weight and bias gradients are
        sums over time, see :class:`derive.derivation.WeightGrad`)."""
        return {p: WeightT(Str(self.weight), Str(p), d_target) for p in self.parts}


class Concat(sympy.Function):
    """``Concat(W, p1, p2, …)`` is ``W [p1; p2; …]``, printed as such."""

    is_commutative = True


@dataclass(frozen=True)
class Elementwise:
    """``target = expr``, every vector in ``expr`` treated as a scalar."""

    target: str
    expr: sympy.Expr
    show: bool = True

    def arguments(self) -> list[str]:
        return sorted(s.name for s in self.expr.free_symbols)

    def vjp(self, d_target: sympy.Symbol, cached: dict[sympy.Expr, sympy.Symbol]) -> dict[str, sympy.Expr]:
        """δu += δv ⊙ ∂f/∂u for each argument u (a per-element parameter
        included: its gradient is this summed over the batch and time).

        The partial is rewritten in terms of cached forward values: with
        ``cached = {σ(z_r): G_r}``, ∂σ(z_r)/∂z_r = σ(1−σ) becomes
        G_r (1 − G_r). The builder gives every activation a node of its own
        (:class:`derive.cell.CellBuilder`), so one left unrewritten is a bug.
        """
        out: dict[str, sympy.Expr] = {}
        for name in self.arguments():
            partial = sympy.diff(self.expr, sympy.Symbol(name)).xreplace(cached)
            unknown = [f for f in partial.atoms(sympy.Function) if functions.of(f) is None]
            if unknown:  # the printers could not spell it
                raise ValueError(f"∂{self.target}/∂{name} contains {unknown[0]}, a function outside the registry")
            out[name] = d_target * partial
        return out


Node = Affine | Elementwise
