"""Which products of the forward pass the kernel's backward step reuses.

The derived adjoint equations are written in the cached forward values
(gates, candidate, states), and several of their products are values the
forward pass computes anyway: ``r_c = G_r ⊙ c(t−1)`` is a node, ``G_i ⊙ h``
a term of the LSTM's memory, ``G_u ⊙ (h − c(t−1))`` the middle pass of a
GRU's mix (see :func:`convex`). When the forward pass keeps such a product
in its cache, the backward equation that contains it costs one pass less.

:func:`plan` rewrites the step's equations accordingly: each product is
substituted where it lowers the operation count (the substitution is
checked by expanding it back), and an intermediate adjoint read by a
single later equation (δG_u, read by δz_u only) is folded into it when the
fold, with the products, needs fewer operations than the two equations
apart. Nothing here changes a value: only which arrays the kernel reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..cell import Cell
from ..graph import Elementwise, WeightT


@dataclass(frozen=True)
class Product:
    """A product the forward pass computes and the backward step may read."""

    name: str  # its variable and cache key in the kernel
    expr: sympy.Expr  # in the cell's forward symbols
    node: str  # the forward node whose computation yields it
    kind: str  # "node": the node itself; "term": a term of its sum; "mix": see convex()


@dataclass(frozen=True)
class StepPlan:
    """The backward step as the kernel computes it."""

    code: dict[str, sympy.Expr | None]  # adjoint target -> its expression; None: folded into a later one
    folded_into: dict[str, str]  # folded adjoint target -> the target of the equation that computes it
    products: tuple[Product, ...]  # the products the step reads: the forward pass caches them


def convex(expr: sympy.Expr) -> tuple[sympy.Symbol, sympy.Symbol, sympy.Symbol] | None:
    """``(g, v, u)`` when ``expr`` is g ⊙ v + (1 − g) ⊙ u (a gate mixing two
    vectors), else None: the kernel then computes u + g ⊙ (v − u), three
    passes instead of four and no temporary."""
    if not isinstance(expr, sympy.Add) or len(expr.args) != 2:
        return None
    one = sympy.Integer(1)
    for first, second in (expr.args, expr.args[::-1]):
        fa, sa = sympy.Mul.make_args(first), sympy.Mul.make_args(second)
        if len(fa) != 2 or len(sa) != 2 or not all(isinstance(f, sympy.Symbol) for f in fa):
            continue
        for g, v in (fa, fa[::-1]):
            rest = [f for f in sa if sympy.expand(f - (one - g)) != 0]
            if len(rest) == 1 and isinstance(rest[0], sympy.Symbol):
                return g, v, rest[0]
    return None


def candidates(cell: Cell) -> list[Product]:
    """Every product of vectors the forward pass computes, in node order."""
    found: list[Product] = []
    for node in cell.nodes:
        if not isinstance(node, Elementwise):
            continue
        mix = convex(node.expr)
        if mix:
            g, v, u = mix
            found.append(Product(f"mix_{node.target}", g * (v - u), node.target, "mix"))
        elif _is_product(node.expr):
            found.append(Product(node.target, node.expr, node.target, "node"))
        elif isinstance(node.expr, sympy.Add):
            for term in node.expr.args:
                if _is_product(term):
                    name = "_".join(f.name for f in sympy.Mul.make_args(term))
                    found.append(Product(name, term, node.target, "term"))
    return found


def plan(cell: Cell, keep: set[str]) -> StepPlan:
    """The step's equations with forward products reused. ``keep``: the
    adjoints that must stay computed under their own name (the δz stored
    for the weight gradients, the gradients sent to the previous step)."""
    adjoints = [a for a in cell.backward.adjoints if a.target not in cell.inputs]
    products = candidates(cell)
    code: dict[str, sympy.Expr | None] = {a.target: _reuse(a.expr, products) for a in adjoints}
    folded_into: dict[str, str] = {}
    for i, a in enumerate(adjoints):
        if a.symbol.name in keep:
            continue
        readers = [b for b in adjoints[i + 1:] if code[b.target] is not None and code[b.target].has(a.symbol)]
        if len(readers) != 1 or _inside_product(code[readers[0].target], a.symbol):
            continue
        reader = readers[0]
        merged = _reuse(code[reader.target].xreplace({a.symbol: code[a.target]}), products)
        if sympy.count_ops(merged) < sympy.count_ops(code[reader.target]) + sympy.count_ops(code[a.target]):
            code[reader.target], code[a.target] = merged, None
            folded_into[a.target] = reader.target
    for target, into in list(folded_into.items()):  # a fold folded again: name the equation that computes it
        while into in folded_into:
            into = folded_into[into]
        folded_into[target] = into
    read = set().union(*(e.free_symbols for e in code.values() if e is not None))
    used = tuple(p for p in products if sympy.Symbol(p.name) in read and p.kind != "node")
    return StepPlan(code, folded_into, used)


def _is_product(expr: sympy.Expr) -> bool:
    factors = sympy.Mul.make_args(expr)
    return isinstance(expr, sympy.Mul) and len(factors) >= 2 and all(isinstance(f, sympy.Symbol) for f in factors)


def _inside_product(expr: sympy.Expr, symbol: sympy.Symbol) -> bool:
    """Whether ``symbol`` is the δz of a matrix product in ``expr`` (it must
    then stay a named array)."""
    return any(w.adjoint == symbol for w in expr.atoms(WeightT))


def _reuse(expr: sympy.Expr, products: list[Product]) -> sympy.Expr:
    """``expr`` with every product that lowers its operation count named."""
    for p in products:
        name = sympy.Symbol(p.name)
        if name == expr or not expr.has(*p.expr.free_symbols):
            continue
        candidate = expr.subs(p.expr, name)
        if (sympy.count_ops(candidate) < sympy.count_ops(expr)
                and sympy.expand(candidate.xreplace({name: p.expr}) - expr) == 0):
            expr = candidate
    return expr


__all__ = ["Product", "StepPlan", "candidates", "convex", "plan"]
