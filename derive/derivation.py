"""Reverse mode over a cell's step: the per-step VJPs and the BPTT recurrence.

The walk visits the nodes backwards; each node's own rule
(:meth:`Affine.vjp`, :meth:`Elementwise.vjp`) sends a contribution to the
adjoint of each of its arguments. The result is general in n_x, n_h and the
batch size, and written in terms of cached forward values only.

Time enters through two seeds. For every state s the gradient that flows
back from step t+1, δs(t)_{t+1} (``d_<s>_next``), is added to δs(t), and
the loss gradient at the output, δy(t) (``d_y``), to the output's adjoint.
What the step sends back to s(t−1), δs(t−1)_t (``d_<s>_prev``), is the
gradient step t−1 receives from the future. The weight gradients sum over
time: δW = Σ_t δz(t) [parts(t)]ᵀ, δb = Σ_t δz(t) 1_B.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sympy
from sympy.core.symbol import Str

from .graph import Affine, Elementwise, adjoint

if False:  # pragma: no cover - typing only, avoids an import cycle
    from .cell import Cell

OUTPUT_GRAD = "d_y"


def carried_in(state: str) -> sympy.Symbol:
    """δs(t)_{t+1}: the gradient on state ``s`` coming from step t+1."""
    return sympy.Symbol(f"d_{state}_next")


@dataclass(frozen=True)
class Adjoint:
    """``δtarget = expr`` (elementwise; ``WeightT`` atoms are matrix products)."""

    target: str
    expr: sympy.Expr

    @property
    def symbol(self) -> sympy.Symbol:
        return adjoint(self.target)


@dataclass(frozen=True)
class WeightGrad:
    """``δweight = Σ_t δz(t) [parts(t)]ᵀ`` — one GEMM over the stacked steps."""

    weight: str
    d_affine: sympy.Symbol
    parts: tuple[str, ...]


@dataclass(frozen=True)
class BiasGrad:
    """``δbias = Σ_t Σ_batch δz(t)``."""

    bias: str
    d_affine: sympy.Symbol


@dataclass(frozen=True)
class ParamGrad:
    """``δp = Σ_t Σ_batch expr(t)`` for a per-element parameter ``p``:
    ``expr`` is this step's contribution, in the step's values."""

    param: str
    expr: sympy.Expr


@dataclass(frozen=True)
class Backward:
    """A cell's derived backward step, in the order it is computed.

    ``adjoints`` ends with the gradients the step sends out: one per
    previous state (``d_<s>_prev``, carried to step t−1) and one per input.
    """

    adjoints: tuple[Adjoint, ...]
    weight_grads: tuple[WeightGrad, ...]
    bias_grads: tuple[BiasGrad, ...]
    outgoing: tuple[str, ...]
    param_grads: tuple[ParamGrad, ...] = ()

    def equations(self) -> list[sympy.Eq]:
        """The adjoint equations as SymPy ``Eq`` objects."""
        return [sympy.Eq(a.symbol, a.expr, evaluate=False) for a in self.adjoints]


def derive_backward(cell: Cell) -> Backward:
    """Derive the backward step of ``cell`` from its forward equations."""
    contributions: dict[str, list[sympy.Expr]] = defaultdict(list)
    for state in cell.states:
        contributions[state.name].append(carried_in(state.name))
    contributions[cell.output].append(sympy.Symbol(OUTPUT_GRAD))

    # activations whose derivative is rewritten in terms of the cached node
    cached = {n.expr: sympy.Symbol(n.target) for n in cell.nodes if isinstance(n, Elementwise)}

    adjoints: list[Adjoint] = []
    weight_grads: list[WeightGrad] = []
    bias_grads: list[BiasGrad] = []
    for node in reversed(cell.nodes):
        terms = contributions.pop(node.target, [])
        if not terms:
            raise ValueError(f"node {node.target!r} of cell {cell.name!r} reaches no output")
        total = sympy.Add(*terms)
        if isinstance(total, sympy.Symbol):
            d_node = total  # δz_hx = δz_h: an alias, not an equation
        else:
            adjoints.append(Adjoint(node.target, total))
            d_node = adjoint(node.target)
        if isinstance(node, Affine):
            weight_grads.append(WeightGrad(node.weight, d_node, node.parts))
            if node.bias:
                bias_grads.append(BiasGrad(node.bias, d_node))
            pushed = node.vjp(d_node)
        else:
            pushed = node.vjp(d_node, cached)
        for name, term in pushed.items():
            contributions[name].append(term)

    outgoing = [s.prev for s in cell.states] + list(cell.inputs)
    for name in outgoing:
        adjoints.append(Adjoint(name, sympy.Add(*contributions.pop(name, []))))
    param_grads = tuple(ParamGrad(p, sympy.Add(*contributions.pop(p))) for p in cell.per_element if p in contributions)
    if contributions:
        raise ValueError(f"cell {cell.name!r}: gradients reach unknown vectors {sorted(contributions)}")
    # the weight and bias gradients read best in the forward order
    return Backward(tuple(adjoints), tuple(reversed(weight_grads)), tuple(reversed(bias_grads)), tuple(outgoing),
                    param_grads)


@dataclass(frozen=True)
class Jacobian:
    """∂of(t)/∂wrt(t−1) as a sum of products of ``diag(·)`` and weight
    blocks (non-commutative SymPy symbols), derived in forward mode."""

    of: str
    wrt: str
    expr: sympy.Expr


class Diag(sympy.Function):
    """``diag(v)``: the diagonal matrix of an elementwise expression."""

    is_commutative = False

    @classmethod
    def eval(cls, v: sympy.Expr) -> sympy.Expr | None:
        return sympy.Integer(1) if v == 1 else None


class Block(sympy.Function):
    """``Block(W, p)``: the columns of ``W`` that act on part ``p`` (both ``Str``)."""

    is_commutative = False


def state_jacobians(cell: Cell) -> list[Jacobian]:
    """∂s(t)/∂s′(t−1) for every pair of states (s, s′) of ``cell``.

    Forward mode over paths: the tangent of a node is a list of paths from
    s′(t−1), each a product of factors; an elementwise node prepends
    diag(∂f/∂u) (merged with a diagonal already in front), an affine node
    the weight block of the part. Zero pairs are left out.
    """
    cached = {n.expr: sympy.Symbol(n.target) for n in cell.nodes if isinstance(n, Elementwise)}
    out: list[Jacobian] = []
    for wrt in cell.states:
        paths: dict[str, list[list[sympy.Expr]]] = {wrt.prev: [[]]}
        for node in cell.nodes:
            new: list[list[sympy.Expr]] = []
            if isinstance(node, Affine):
                for p in node.parts:
                    new += [[Block(Str(node.weight), Str(p)), *path] for path in paths.get(p, [])]
            else:
                for name in node.arguments():
                    partial = sympy.diff(node.expr, sympy.Symbol(name)).xreplace(cached)
                    new += [_prepend_diagonal(partial, path) for path in paths.get(name, [])]
            if new:
                paths[node.target] = new
        for of in cell.states:
            if of.name in paths:
                expr = sympy.Add(*(sympy.Mul(*path) if path else sympy.Integer(1) for path in paths[of.name]))
                out.append(Jacobian(of.name, wrt.prev, expr))
    return out


def _prepend_diagonal(partial: sympy.Expr, path: list[sympy.Expr]) -> list[sympy.Expr]:
    """diag(u) diag(v) … → diag(u ⊙ v) …, so each path reads as one
    diagonal between weight blocks."""
    if path and isinstance(path[0], Diag):
        return [Diag(partial * path[0].args[0]), *path[1:]]
    return [Diag(partial), *path] if partial != 1 else list(path)
