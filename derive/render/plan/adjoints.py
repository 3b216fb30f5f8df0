"""The backward step's shared values and matrix products, as the plan
names them: SymPy's ``cse`` over the adjoint equations (the matrix products
kept whole), and the W_pᵀ δz atoms replaced by the names of GEMM results.
"""

from __future__ import annotations

import sympy

from ...derivation import Adjoint
from ...graph import Affine, WeightT


def shared_subexpressions(adjoints: list[Adjoint]) -> tuple[list[tuple[sympy.Symbol, sympy.Expr]], dict[str, sympy.Expr]]:
    """SymPy's ``cse`` over the step's adjoint equations: the values several
    equations need (the complement 1 − G_u of a gate, …), named ``shared0``…
    Matrix products (``WeightT``) are kept whole, never split across names."""
    atoms = sorted({w for a in adjoints for w in a.expr.atoms(WeightT)}, key=sympy.default_sort_key)
    hide = {w: sympy.Symbol(f"_matmul_{i}") for i, w in enumerate(atoms)}
    back = {v: k for k, v in hide.items()}
    shared, reduced = sympy.cse(
        [a.expr.xreplace(hide) for a in adjoints], symbols=sympy.numbered_symbols("shared"), ignore=tuple(back), order="none"
    )
    shared = [(n, v.xreplace(back)) for n, v in shared]
    reduced_of = {a.target: r.xreplace(back) for a, r in zip(adjoints, reduced)}
    # a shared value that is a whole equation, computed before its other
    # readers, keeps that equation's name (d_h = d_c*(1 - Gz), not shared0)
    for name, value in list(shared):
        whole = [a for a in adjoints if reduced_of[a.target] == name]
        readers = [a for a in adjoints if reduced_of[a.target].has(name)]
        if whole and readers[0] is whole[0] and not any(v.has(name) for _, v in shared):
            rename = {name: whole[0].symbol}
            reduced_of = {t: r.xreplace(rename) for t, r in reduced_of.items()}
            reduced_of[whole[0].target] = value
            shared.remove((name, value))
    return shared, reduced_of


def inline(expr: sympy.Expr, shared: list[tuple[sympy.Symbol, sympy.Expr]]) -> sympy.Expr:
    """``expr`` with every shared name replaced by its value, nested ones included."""
    values = dict(shared)
    for _ in range(len(values) + 1):
        new = expr.xreplace(values)
        if new == expr:
            break
        expr = new
    return expr


def needs(expr: sympy.Expr, shared: list[tuple[sympy.Symbol, sympy.Expr]]) -> set[sympy.Symbol]:
    """The shared names ``expr`` uses, directly or through other shared names."""
    values = dict(shared)
    need, todo = set(), [s for s in expr.free_symbols if s in values]
    while todo:
        s = todo.pop()
        if s not in need:
            need.add(s)
            todo += [u for u in values[s].free_symbols if u in values]
    return need


def is_whole_group(expr: sympy.Expr, ws: list[WeightT], nodes: tuple[Affine, ...]) -> bool:
    """The stacked GEMM replaces these atoms only if they are plain terms of
    the sum, one per affine node acting on the state."""
    terms = set(sympy.Add.make_args(expr))
    weights = sorted(w.weight for w in ws)
    return all(w in terms for w in ws) and weights == sorted(n.weight for n in nodes)


def substitute_matmuls(expr: sympy.Expr, subs: dict[WeightT, sympy.Symbol]) -> sympy.Expr:
    """Replace WeightT atoms by the names of their GEMM results; atoms that
    share one stacked GEMM are replaced once (the others by zero)."""
    seen: set[sympy.Symbol] = set()
    out: dict[WeightT, sympy.Expr] = {}
    for w in sorted(subs, key=sympy.default_sort_key):
        s = subs[w]
        out[w] = sympy.Integer(0) if s in seen and s.name.startswith("matmul_") else s
        seen.add(s)
    return expr.xreplace(out)
