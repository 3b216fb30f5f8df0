"""Run a cell's equations on explicit matrices of scalar symbols.

The derived equations are general in n_x, n_h and the batch size. To prove
them, this module evaluates them — forward, then the derived backward with
its BPTT seeds — at small concrete sizes where every matrix is a SymPy
``Matrix`` of scalar symbols. The tests compare the result with the
brute-force derivative of an independently written forward.

σ and tanh can be swapped for opaque functions (``functions=``) so that the
comparison needs only ``expand``, never ``simplify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sympy

from .cell import Cell
from .derivation import OUTPUT_GRAD, Backward, carried_in
from .functions import sigmoid
from .graph import Affine, WeightT, adjoint

Matrix = sympy.Matrix


@dataclass(frozen=True)
class Problem:
    """Symbolic inputs of a T-step run: parameters, inputs, initial states,
    and the gradients arriving at the outputs and at the final states."""

    params: dict[str, Matrix]
    xs: list[Matrix]
    state0: dict[str, Matrix]
    dys: list[Matrix]
    dstate: dict[str, Matrix]


def _symbols(prefix: str, rows: int, cols: int) -> Matrix:
    return Matrix(rows, cols, lambda i, j: sympy.Symbol(f"{prefix}_{i}_{j}"))


def make_problem(cell: Cell, n_x: int, n_h: int, batch: int = 1, steps: int = 1) -> Problem:
    """Every entry a fresh scalar symbol; a bias is an (n_h, 1) column."""
    params = {}
    for name in cell.params:
        shape = cell.param_shape(name, n_x, n_h)
        params[name] = _symbols(name, shape[0], shape[1] if len(shape) == 2 else 1)
    return Problem(
        params,
        [_symbols(f"x{t}", n_x, batch) for t in range(steps)],
        {s.name: _symbols(f"{s.name}0", n_h, batch) for s in cell.states},
        [_symbols(f"dy{t}", n_h, batch) for t in range(steps)],
        {s.name: _symbols(f"d{s.name}T", n_h, batch) for s in cell.states},
    )


def _elementwise(expr: sympy.Expr, env: Mapping[sympy.Basic, Matrix], shape: tuple[int, int]) -> Matrix:
    """Evaluate a vector expression entry by entry (``WeightT`` atoms are
    looked up whole in ``env``, as the matrix products they stand for)."""
    values = dict(env)
    for k, w in enumerate(sorted(expr.atoms(WeightT), key=sympy.default_sort_key)):
        placeholder = sympy.Symbol(f"_matmul{k}")
        expr = expr.xreplace({w: placeholder})
        values[placeholder] = env[w]
    atoms = [a for a in expr.free_symbols if a in values]
    return Matrix(*shape, lambda i, j: expr.xreplace({a: values[a][i, j] for a in atoms}))


def _blocks(cell: Cell, weight: str, n_x: int, n_h: int) -> dict[str, slice]:
    """Column slice of each part of ``weight``."""
    node = next(n for n in cell.nodes if isinstance(n, Affine) and n.weight == weight)
    sizes = {"n_x": n_x, "n_h": n_h}
    out, start = {}, 0
    for p in node.parts:
        size = sizes[cell.vectors[p].size]
        out[p] = slice(start, start + size)
        start += size
    return out


def run(
    cell: Cell,
    problem: Problem,
    *,
    functions: Mapping[type[sympy.Function], type[sympy.Function]] | None = None,
    backward: Backward | None = None,
) -> tuple[list[Matrix], dict[str, Matrix], dict[str, Matrix]]:
    """Forward over the steps, then the derived backward.

    Returns ``(ys, final_states, grads)``; ``grads`` has every parameter,
    ``xs`` (as ``x0``, ``x1``…) and each initial state (``c0``…).
    ``backward`` replaces the derived equations (to show that a wrong one
    fails the proof).
    """
    backward = backward or cell.backward
    swap = dict(functions or {})
    n_h = problem.state0[cell.states[0].name].rows
    n_x, batch = problem.xs[0].shape
    ones = Matrix.ones(1, batch)

    def f(expr: sympy.Expr) -> sympy.Expr:
        for old, new in swap.items():
            expr = expr.replace(old, new)
        return expr

    # forward: every node's value at every step is kept (the cache)
    steps: list[dict[sympy.Basic, Matrix]] = []
    states = dict(problem.state0)
    for x in problem.xs:
        env: dict[sympy.Basic, Matrix] = {sympy.Symbol("x"): x}
        env.update({sympy.Symbol(s.prev): states[s.name] for s in cell.states})
        for node in cell.nodes:
            if isinstance(node, Affine):
                stacked = Matrix.vstack(*(env[sympy.Symbol(p)] for p in node.parts))
                value = problem.params[node.weight] * stacked
                if node.bias:
                    value += problem.params[node.bias] * ones
            else:
                value = _elementwise(f(node.expr), env, (n_h, batch))
            env[sympy.Symbol(node.target)] = value
        states = {s.name: env[sympy.Symbol(s.name)] for s in cell.states}
        steps.append(env)
    ys = [env[sympy.Symbol(cell.output)] for env in steps]

    # backward through time with the derived equations
    grads = {name: sympy.zeros(*m.shape) for name, m in problem.params.items()}
    carried = dict(problem.dstate)
    for t in reversed(range(len(steps))):
        env = dict(steps[t])
        env[sympy.Symbol(OUTPUT_GRAD)] = problem.dys[t]
        env.update({carried_in(s.name): carried[s.name] for s in cell.states})
        for a in backward.adjoints:
            for w in a.expr.atoms(WeightT):
                cols = _blocks(cell, w.weight, n_x, n_h)[w.part]
                env[w] = problem.params[w.weight][:, cols].T * env[w.adjoint]
            shape = (n_x if a.target == "x" else n_h, batch)
            env[adjoint(a.target)] = _elementwise(a.expr, env, shape)
        for g in backward.weight_grads:
            stacked = Matrix.vstack(*(env[sympy.Symbol(p)] for p in g.parts))
            grads[g.weight] += env[g.d_affine] * stacked.T
        for g in backward.bias_grads:
            grads[g.bias] += env[g.d_affine] * Matrix.ones(batch, 1)
        grads[f"x{t}"] = env[adjoint("x")]
        carried = {s.name: env[adjoint(s.prev)] for s in cell.states}
    grads.update({f"{name}0": value for name, value in carried.items()})
    return ys, states, grads


def opaque_functions() -> tuple[dict[type[sympy.Function], type[sympy.Function]], dict[type, object]]:
    """Opaque stand-ins for σ and tanh, and the rule that rewrites their
    derivatives (σ' = σ(1 − σ), tanh' = 1 − tanh²), which
    :func:`derivative_identities_hold` proves for the real functions.

    Returns ``(swap, derivative_rules)``: ``swap`` maps sigmoid/tanh to the
    opaque functions S/Th; ``derivative_rules`` maps the opaque derivative
    functions dS/dTh to callables giving their value.
    """
    dS = sympy.Function("dS")
    dTh = sympy.Function("dTh")

    class S(sympy.Function):
        def fdiff(self, argindex: int = 1) -> sympy.Expr:
            return dS(self.args[0])

    class Th(sympy.Function):
        def fdiff(self, argindex: int = 1) -> sympy.Expr:
            return dTh(self.args[0])

    rules = {dS: lambda u: S(u) * (1 - S(u)), dTh: lambda u: 1 - Th(u) ** 2}
    return {sigmoid: S, sympy.tanh: Th}, rules


def derivative_identities_hold() -> bool:
    """σ'(z) = σ(z)(1 − σ(z)) and tanh'(z) = 1 − tanh(z)², checked on the
    real functions (σ written with exp)."""
    z = sympy.Symbol("z", real=True)
    s = 1 / (1 + sympy.exp(-z))
    d_sigmoid_ok = sympy.simplify(sympy.diff(s, z) - s * (1 - s)) == 0
    d_tanh_ok = sympy.simplify(sympy.diff(sympy.tanh(z), z) - (1 - sympy.tanh(z) ** 2)) == 0
    fdiff_ok = sympy.simplify((sympy.diff(sigmoid(z), z) - sympy.diff(s, z)).rewrite(sympy.exp).subs(sigmoid(z), s)) == 0
    return bool(d_sigmoid_ok and d_tanh_ok and fdiff_ok)
