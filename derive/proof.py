"""Prove a cell's derived gradients: exactly (symbolic), then numerically.

The derived equations are general in n_x, n_h and the batch size. To prove
them, this module evaluates them at small concrete sizes where every matrix
is a SymPy ``Matrix`` of scalar symbols: :func:`run` computes the forward,
then the derived backward with its BPTT seeds. :func:`brute_force`
differentiates the scalar loss L = Σ_t ⟨δy(t), y(t)⟩ + Σ_s ⟨δs(T), s(T)⟩ of
a forward step — the cell's own, or an independently written reference —
with SymPy's ``diff``, entry by entry. The two must be equal exactly.

Activations are swapped for opaque functions (:func:`opaque_functions`):
their derivative identities are proved once on their own
(:func:`derivative_identities_hold`), and equality then needs no
``simplify``: every opaque application is named, and the entries compare as
polynomials (or rational functions, for a cell that divides) over ℤ.

Why one and two steps are enough. At T = 1 every input of the step is a
fresh symbol: the parameters, x, the entering states s(t−1), the output's
gradient δy and the gradient g arriving on the new states. So the one-step
check is the identity, in ℤ(…), "the derived step backward B(θ, x, s, δy, g)
equals the brute-force VJP ∂φ/∂(θ, x, s) of φ = ⟨δy, y⟩ + ⟨g, s(t)⟩", for
all values of those symbols. Backpropagation through T steps applies that
same map at each step, from the last: g(T) is the seed, g(t−1) is the
state part of the step's result at (x(t), s(t−1), δy(t), g(t)), and the
parameter parts add up. By induction on the steps from the last, if the
identity holds with free symbols it holds with the values substituted (a
substitution maps equal rational functions to equal ones wherever the
denominators stay non-zero; opaque applications of equal arguments stay
equal), so the derived
and brute-force gradients agree for every T. The two-step check is kept as
an end-to-end test of that bookkeeping (:func:`run` and :func:`brute_force`
carrying g back and summing the parameter parts), not because the cell needs it.

The comparison (:func:`equal_exactly`) never takes a gcd and never samples:
each side becomes a numerator over a factored denominator, and two sides
are equal iff the cross-multiplied numerators are the same polynomial.

:func:`prove` runs all of it on any cell, built-in or a user's file, then a
float64 finite-difference check of the cell's generated kernel; ``derive
prove CELL_OR_FILE`` prints one line per check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace

import numpy as np
import sympy

from . import functions
from .cell import Cell
from .derivation import OUTPUT_GRAD, Backward, carried_in
from .graph import Affine, WeightT, adjoint

Matrix = sympy.Matrix
Swap = Mapping[type[sympy.Function], type[sympy.Function]]
Reference = Callable[[dict, Matrix, dict, SimpleNamespace], dict]
"""An independent forward step ``(params, x, states, f) -> new values``:
``f.sigmoid``, ``f.tanh``… apply the (opaque) activations entry-wise to a
Matrix; the result maps each state, and the output, to its new Matrix."""


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
    """Every entry a fresh scalar symbol; a bias or per-element parameter is an (n_h, 1) column."""
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


def _swapped(expr: sympy.Expr, swap: Swap) -> sympy.Expr:
    for old, new in swap.items():
        expr = expr.replace(old, new)
    return expr


def step_values(cell: Cell, params: Mapping[str, Matrix], x: Matrix, states: Mapping[str, Matrix],
                swap: Swap | None = None) -> dict[sympy.Basic, Matrix]:
    """One forward step of the cell's own equations on matrices: every
    vector of the step (inputs, previous states, per-element parameters
    broadcast over the batch, nodes) by its symbol."""
    swap = dict(swap or {})
    n_h, batch = next(iter(states.values())).shape
    ones = Matrix.ones(1, batch)
    env: dict[sympy.Basic, Matrix] = {sympy.Symbol(cell.inputs[0]): x}
    env.update({sympy.Symbol(s.prev): states[s.name] for s in cell.states})
    env.update({sympy.Symbol(p): params[p] * ones for p in cell.per_element})
    for node in cell.nodes:
        if isinstance(node, Affine):
            value = params[node.weight] * Matrix.vstack(*(env[sympy.Symbol(p)] for p in node.parts))
            if node.bias:
                value += params[node.bias] * ones
        else:
            value = _elementwise(_swapped(node.expr, swap), env, (n_h, batch))
        env[sympy.Symbol(node.target)] = value
    return env


def run(
    cell: Cell,
    problem: Problem,
    *,
    functions: Swap | None = None,
    backward: Backward | None = None,
) -> tuple[list[Matrix], dict[str, Matrix], dict[str, Matrix]]:
    """Forward over the steps, then the derived backward.

    Returns ``(ys, final_states, grads)``; ``grads`` has every parameter,
    ``xs`` (as ``x0``, ``x1``…) and each initial state (``c0``…).
    ``backward`` replaces the derived equations (to show that a wrong one
    fails the proof); ``functions`` swaps activations (for opaque ones).
    """
    backward = backward or cell.backward
    n_x, batch = problem.xs[0].shape
    n_h = problem.state0[cell.states[0].name].rows
    x_name = cell.inputs[0]

    # forward: every node's value at every step is kept (the cache)
    steps: list[dict[sympy.Basic, Matrix]] = []
    states = dict(problem.state0)
    for x in problem.xs:
        env = step_values(cell, problem.params, x, states, functions)
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
            shape = (n_x if a.target == x_name else n_h, batch)
            env[adjoint(a.target)] = _elementwise(_swapped(a.expr, functions or {}), env, shape)
        for g in backward.weight_grads:
            stacked = Matrix.vstack(*(env[sympy.Symbol(p)] for p in g.parts))
            grads[g.weight] += env[g.d_affine] * stacked.T
        for g in backward.bias_grads:
            grads[g.bias] += env[g.d_affine] * Matrix.ones(batch, 1)
        for g in backward.param_grads:
            grads[g.param] += _elementwise(_swapped(g.expr, functions or {}), env, (n_h, batch)) * Matrix.ones(batch, 1)
        grads[f"x{t}"] = env[adjoint(x_name)]
        carried = {s.name: env[adjoint(s.prev)] for s in cell.states}
    grads.update({f"{name}0": value for name, value in carried.items()})
    return ys, states, grads


# -- opaque activations ------------------------------------------------------------
@cache
def opaque_functions() -> tuple[dict[type[sympy.Function], type[sympy.Function]], dict[type, Callable]]:
    """An opaque stand-in for every activation of the registry, and the rule
    that rewrites each one's derivative (σ' = σ(1 − σ), tanh' = 1 − tanh², …)
    in the opaque functions, as the activation's own ``fdiff`` states it.

    Returns ``(swap, derivative_rules)``: ``swap`` maps each activation to
    its opaque function; ``derivative_rules`` maps each opaque derivative
    function to a callable giving its value.
    """
    swap: dict[type[sympy.Function], type[sympy.Function]] = {}
    derivatives: dict[type[sympy.Function], type[sympy.Function]] = {}
    for entry in functions.REGISTRY:
        if entry.indicator or entry.function is functions.identity:
            continue  # indicators appear only in derivatives; identity evaluates away
        tag = "S" if entry.name == "sigmoid" else "Th" if entry.name == "tanh" else "O_" + entry.name
        d = sympy.Function("d" + tag)

        def fdiff(self: sympy.Function, argindex: int = 1, d: type = d) -> sympy.Expr:
            return d(self.args[0])

        swap[entry.function] = type(tag, (sympy.Function,), {"fdiff": fdiff, "nargs": 1})
        derivatives[entry.function] = d
    v = sympy.Dummy("v")
    rules = {}
    for f, d in derivatives.items():
        derivative = _swapped(sympy.diff(f(v), v), swap)
        rules[d] = lambda u, derivative=derivative: derivative.xreplace({v: u})
    return swap, rules


def derivative_identities_hold() -> bool:
    """Each activation's ``fdiff`` against its closed form: exactly for σ
    (written with exp), tanh, exp and softplus (written with log and exp);
    numerically, away from their kinks, for ReLU and hard-σ (piecewise)."""
    z = sympy.Symbol("z", real=True)
    s = 1 / (1 + sympy.exp(-z))
    checks = [
        sympy.simplify(sympy.diff(s, z) - s * (1 - s)) == 0,
        sympy.simplify(sympy.diff(sympy.tanh(z), z) - (1 - sympy.tanh(z) ** 2)) == 0,
        sympy.simplify((sympy.diff(functions.sigmoid(z), z) - sympy.diff(s, z)).rewrite(sympy.exp)
                       .subs(functions.sigmoid(z), s)) == 0,
        sympy.simplify(sympy.diff(functions.softplus(z), z).subs(functions.softplus(z), sympy.log(1 + sympy.exp(z)))
                       - sympy.diff(sympy.log(1 + sympy.exp(z)), z)) == 0,
    ]
    points = np.array([-5.1, -2.9, -1.3, -0.2, 0.4, 1.7, 2.8, 4.6])
    for entry in functions.REGISTRY:
        if entry.indicator or entry.reference is None:
            continue
        ref = entry.reference
        numeric = (ref(points + 1e-6) - ref(points - 1e-6)) / 2e-6
        derived = sympy.lambdify(z, sympy.diff(entry.function(z), z), modules=[_indicator_modules(), "numpy"])(points)
        checks.append(bool(np.allclose(np.broadcast_to(derived, points.shape), numeric, rtol=1e-6, atol=1e-8)))
    return all(checks)


def _indicator_modules() -> dict[str, Callable]:
    out: dict[str, Callable] = {}
    for e in functions.REGISTRY:
        if e.reference is not None:
            out[e.function.__name__] = e.reference
    return out


# -- brute force and exact comparison -----------------------------------------------
def own_reference(cell: Cell) -> Reference:
    """The cell's own forward as a reference step (for a proof of the
    derivation: the forward is then the cell's definition itself)."""

    def step(params: dict, x: Matrix, states: dict, f: SimpleNamespace) -> dict:
        env = step_values(cell, params, x, states, f.swap)
        names = {s.name for s in cell.states} | {cell.output}
        return {n: env[sympy.Symbol(n)] for n in names}

    return step


def _namespace(swap: Swap) -> SimpleNamespace:
    ns = SimpleNamespace(swap=swap)
    for entry in functions.REGISTRY:
        f = swap.get(entry.function, entry.function)
        setattr(ns, entry.name, lambda m, f=f: m.applyfunc(f))
    return ns


def brute_force(cell: Cell, prob: Problem, reference: Reference, swap: Swap, rules: Mapping) -> tuple[list[Matrix], dict[str, Matrix]]:
    """The reference forward, and SymPy's own derivatives of it.

    ``diff`` differentiates one step's φ = ⟨δy, y⟩ + ⟨g, s⟩, where the
    input, the previous states, δy and g (the gradient arriving on the new
    states s) are all plain symbols: once, whatever the number of steps.
    Across steps the chain rule carries g back, g ← ∂φ/∂s(t−1), with the
    step's values substituted for the symbols, so ``diff`` never walks a
    nested two-step expression. (Substituting values for the input's
    symbols after differentiating is renaming a variable: ∂φ/∂x at x = x(t)
    is ∂φ(x(t))/∂x(t); and for every other variable it commutes with ∂.)"""
    f = _namespace(swap)
    n_h, batch = next(iter(prob.state0.values())).shape
    states, entering, ys = dict(prob.state0), [], []
    for x in prob.xs:
        entering.append(states)
        new = reference(prob.params, x, states, f)
        states = {s.name: new[s.name] for s in cell.states}
        ys.append(new[cell.output])

    def rewrite(expr: sympy.Expr) -> sympy.Expr:
        """Every derivative application dF(u) rewritten by its rule, found in
        one walk and substituted at once (``replace`` per rule walked the
        whole expression once per activation of the registry)."""
        while found := {a for a in expr.atoms(sympy.Function) if type(a) in rules}:
            expr = expr.xreplace({a: rules[type(a)](*a.args) for a in found})
        return expr

    # one step, every input a symbol, differentiated once
    x_sym = _symbols("_x", *prob.xs[0].shape)
    dy_sym = _symbols("_dy", n_h, batch)
    s_sym = {k: _symbols(f"_s{k}", n_h, batch) for k in prob.state0}
    g_sym = {k: _symbols(f"_g{k}", n_h, batch) for k in prob.state0}
    new = reference(prob.params, x_sym, s_sym, f)
    phi = sum(dy_sym.multiply_elementwise(new[cell.output]))
    phi += sum(sum(g_sym[s.name].multiply_elementwise(new[s.name])) for s in cell.states)
    terms = [(term, term.free_symbols) for term in sympy.Add.make_args(sympy.sympify(phi))]

    def d(m: Matrix) -> Matrix:
        """∂φ/∂m entry by entry: the sum of ∂term/∂e over the terms of φ that contain e."""
        return m.applyfunc(lambda e: rewrite(sympy.Add(*(sympy.diff(term, e) for term, free in terms if e in free))))

    d_params = {k: d(m) for k, m in prob.params.items()}
    d_x, d_s = d(x_sym), {k: d(m) for k, m in s_sym.items()}

    grads: dict[str, Matrix] = {k: sympy.zeros(*m.shape) for k, m in prob.params.items()}
    g = dict(prob.dstate)
    for t in reversed(range(len(prob.xs))):
        pairs = [(x_sym, prob.xs[t]), (dy_sym, prob.dys[t])]
        pairs += [(s_sym[k], entering[t][k]) for k in s_sym] + [(g_sym[k], g[k]) for k in g_sym]
        values = {sym: value for syms, vals in pairs for sym, value in zip(syms, vals)}

        def at(m: Matrix) -> Matrix:
            return m.applyfunc(lambda e: e.xreplace(values))

        for k, m in d_params.items():
            grads[k] += at(m)
        grads[f"x{t}"] = at(d_x)
        g = {k: at(m) for k, m in d_s.items()}
    grads.update({f"{k}0": v for k, v in g.items()})
    return ys, grads


class Canon:
    """Names every application of a function by its expanded argument,
    innermost first, so that nested σ(… tanh(…) …) become polynomials in a
    few symbols: equal arguments get the same name, and ``expand(a - b) == 0``
    stays an exact test without expanding inside the functions again."""

    def __init__(self) -> None:
        self.names: dict[tuple[str, sympy.Expr], sympy.Symbol] = {}

    def __call__(self, expr: sympy.Expr) -> sympy.Expr:
        memo: dict[sympy.Basic, sympy.Basic] = {}

        def rebuild(e: sympy.Basic) -> sympy.Basic:  # bottom-up, each shared subtree once
            if e.is_Atom:
                return e
            if e not in memo:
                args = [rebuild(a) for a in e.args]
                if isinstance(e, sympy.Function):
                    key = (type(e).__name__, sympy.expand(args[0]))
                    memo[e] = self.names.setdefault(key, sympy.Symbol(f"_{key[0]}{len(self.names)}"))
                else:
                    memo[e] = e.func(*args)
            return memo[e]

        return rebuild(expr)


class Polynomial:
    """A polynomial over ℤ in numbered variables x₀, x₁, …, sparse: a dict
    {monomial: non-zero coefficient} where a monomial is one Python int
    holding the exponent of x_k in bits [k·FIELD, (k+1)·FIELD). Multiplying
    two monomials is then adding two ints (SymPy's ring adds tuples of
    exponents, one per variable of the ring: ~20 times slower here).

    No exponent can carry into its neighbour's field: each polynomial keeps
    ``degree``, a bound on its total degree (0 for a constant, the larger
    bound for a sum, the sum of the bounds for a product), and an operation
    whose bound would reach 2**FIELD raises instead. Two polynomials are
    equal iff their dicts are (each monomial has one code)."""

    FIELD = 32
    __slots__ = ("terms", "degree", "_hash")

    def __init__(self, terms: dict[int, int], degree: int) -> None:
        if degree >= 1 << self.FIELD:
            raise OverflowError(f"total degree up to {degree}: more than a {self.FIELD}-bit exponent field holds")
        self.terms = terms
        self.degree = degree
        self._hash: int | None = None

    @classmethod
    def variable(cls, k: int) -> Polynomial:
        return cls({1 << (cls.FIELD * k): 1}, 1)

    @classmethod
    def constant(cls, c: int) -> Polynomial:
        return cls({0: c} if c else {}, 0)

    def is_constant(self, c: int) -> bool:
        return self.terms == ({0: c} if c else {})

    def __add__(self, other: Polynomial) -> Polynomial:
        big, small = (self.terms, other.terms) if len(self.terms) >= len(other.terms) else (other.terms, self.terms)
        terms = dict(big)
        for m, c in small.items():
            v = terms.get(m, 0) + c
            if v:
                terms[m] = v
            else:
                del terms[m]
        return Polynomial(terms, max(self.degree, other.degree))

    def __mul__(self, other: Polynomial) -> Polynomial:
        degree = self.degree + other.degree
        big, small = (self.terms, other.terms) if len(self.terms) >= len(other.terms) else (other.terms, self.terms)
        terms: dict[int, int] = {}
        get = terms.get
        for m2, c2 in small.items():
            for m1, c1 in big.items():
                m = m1 + m2
                terms[m] = get(m, 0) + c1 * c2
        return Polynomial({m: c for m, c in terms.items() if c}, degree)

    def __pow__(self, k: int) -> Polynomial:
        if k < 0:
            raise ValueError(f"a polynomial to the power {k}: expected k ≥ 0")
        out, base = Polynomial.constant(1), self
        while k:
            if k & 1:
                out = out * base
            k >>= 1
            if k:
                base = base * base
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Polynomial) and self.terms == other.terms

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self.terms.items()))
        return self._hash


def equal_exactly(pairs: list[tuple[sympy.Expr, sympy.Expr]]) -> list[bool]:
    """Exact equality of each pair, once every function application is
    named (:class:`Canon`): as polynomials over ℤ, or — when an entry
    divides (minLSTM's f/(f + i)) — as fractions of such polynomials.

    Equivalent to ``expand(a - b) == 0`` (``cancel`` with a division),
    computed with sparse :class:`Polynomial` s, which multiply out a
    two-step GRU gradient in milliseconds where ``Expr.expand`` takes seconds.

    A value is kept as a numerator over a *factored* denominator: a product
    ∏ pₖ^eₖ of the polynomials pₖ the expression divides by, each kept
    whole (never multiplied out, never factored further, no gcd ever
    taken). A sum of fractions is put over the common multiple whose
    exponent of each pₖ is the largest of the terms' — so a sum over the
    same denominator (f + i)² stays over (f + i)², where multiplying
    denominators out would square it at every term and make the degrees
    (and the time: minutes for a two-step minLSTM) explode. Two values
    a/D and b/E are equal iff a·(L/D) = b·(L/E) for any common multiple L
    of D and E (ℤ[…] is an integral domain and L ≠ 0), which is the test:
    still an identity of polynomials, exact.
    """
    canon = Canon()
    named = [(canon(a), canon(b)) for a, b in pairs]
    symbols = sorted(set().union(*(a.free_symbols | b.free_symbols for a, b in named)), key=str)
    gen = {x: Polynomial.variable(k) for k, x in enumerate(symbols)}
    one = Polynomial.constant(1)
    Denominator = dict  # {polynomial: exponent}: the product ∏ p**e, p never 1 or 0
    memo: dict[sympy.Basic, tuple[Polynomial, Denominator]] = {}

    def common(dens: list[Denominator]) -> Denominator:
        """The common multiple of factored denominators: each factor at its largest exponent."""
        out: Denominator = {}
        for den in dens:
            for p, k in den.items():
                if out.get(p, 0) < k:
                    out[p] = k
        return out

    def over(num: Polynomial, den: Denominator, target: Denominator) -> Polynomial:
        """The numerator of num/den written over ``target`` (a multiple of ``den``): num · target/den."""
        for p, k in target.items():
            if k > den.get(p, 0):
                num = num * p ** (k - den.get(p, 0))
        return num

    def factor(p: Polynomial, k: int) -> Denominator:
        if p.is_constant(0):
            raise ZeroDivisionError("the expression divides by a polynomial that is identically 0")
        return {} if p.is_constant(1) else {p: k}

    def value(e: sympy.Basic) -> tuple[Polynomial, Denominator]:
        """``e`` as (numerator, factored denominator); shared subtrees converted once."""
        if e in memo:
            return memo[e]
        if e.is_Symbol:
            out = (gen[e], {})
        elif e.is_Rational:
            out = (Polynomial.constant(int(e.p)), factor(Polynomial.constant(int(e.q)), 1))
        elif e.is_Add:
            terms = [value(a) for a in e.args]
            den = common([d for _, d in terms])
            out = (sum((over(n, d, den) for n, d in terms), Polynomial.constant(0)), den)
        elif e.is_Mul:
            num, den = one, {}
            for a in e.args:
                n, d = value(a)
                num = num * n
                den = {p: den.get(p, 0) + d.get(p, 0) for p in den.keys() | d.keys()}
            out = (num, den)
        elif e.is_Pow and e.exp.is_Integer:
            n, d = value(e.base)
            k = int(e.exp)
            if k >= 0:
                out = (n**k, {p: j * k for p, j in d.items()})
            else:  # the base's denominator moves up, its numerator down
                up = one
                for p, j in d.items():
                    up = up * p ** (j * -k)
                out = (up, factor(n, -k))
        else:
            raise TypeError(f"not a polynomial in the named symbols: {e}")
        memo[e] = out
        return out

    results = []
    for a, b in named:
        (na, da), (nb, db) = value(a), value(b)
        den = common([da, db])
        results.append(over(na, da, den) == over(nb, db, den))
    return results


def mismatches(cell: Cell, n_x: int, steps: int, *, reference: Reference | None = None,
               backward: Backward | None = None, n_h: int = 2) -> list[str]:
    """Every gradient (and output) whose derived value differs from the
    brute-force derivative of ``reference`` (the cell's own forward by
    default), at n_h = 2, batch 1: ``[]`` when the derivation is proved."""
    swap, rules = opaque_functions()
    prob = make_problem(cell, n_x=n_x, n_h=n_h, batch=1, steps=steps)
    ys, _, derived = run(cell, prob, functions=swap, backward=backward)
    ref_ys, ref = brute_force(cell, prob, reference or own_reference(cell), swap, rules)
    if set(derived) != set(ref):
        return sorted(set(derived) ^ set(ref))
    keys = [(f"y{t}", y, r) for t, (y, r) in enumerate(zip(ys, ref_ys))]
    keys += [(key, derived[key], ref[key]) for key in sorted(ref)]
    pairs = [(a, b) for _, m, r in keys for a, b in zip(m, r)]
    same = iter(equal_exactly(pairs))
    return [key for key, m, _ in keys if not all([next(same) for _ in range(len(m))])]


# -- the finite-difference check of a kernel ------------------------------------------
def finite_differences(kernel: object, *, n_x: int = 3, n_h: int = 4, T: int = 4, B: int = 2, seed: int = 0,
                       eps: float = 1e-6) -> dict[str, float]:
    """The relative error of every gradient ``kernel.backward`` returns
    against central differences of L = Σ_t ⟨dys(t), ys(t)⟩ + Σ_s ⟨dstate[s], s(T)⟩,
    in float64: ‖g − g_fd‖ / max(‖g‖, ‖g_fd‖, 1e-12), per parameter, ``xs`` and
    initial state."""
    rng = np.random.default_rng(seed)
    params = kernel.init_params(n_x, n_h, seed=seed)  # type: ignore[attr-defined]
    states = kernel.STATES  # type: ignore[attr-defined]
    xs = rng.standard_normal((T, B, n_x))
    state0 = {s: rng.standard_normal((B, n_h)) * 0.5 for s in states}
    dys = rng.standard_normal((T, B, n_h))
    dstate = {s: rng.standard_normal((B, n_h)) for s in states}

    def loss() -> float:
        ys, cache = kernel.forward(params, xs, state0)  # type: ignore[attr-defined]
        return float(np.sum(dys * ys) + sum(np.sum(dstate[s] * cache["final"][s]) for s in states))

    _, cache = kernel.forward(params, xs, state0)  # type: ignore[attr-defined]
    grads = kernel.backward(cache, dys, dstate)  # type: ignore[attr-defined]
    arrays = {**params, "xs": xs, **{f"{s}0": state0[s] for s in states}}
    errors = {}
    for key, array in arrays.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            keep = array[index]
            array[index] = keep + eps
            up = loss()
            array[index] = keep - eps
            down = loss()
            array[index] = keep
            numeric[index] = (up - down) / (2 * eps)
        got = grads[key]
        errors[key] = float(np.linalg.norm(got - numeric) / max(np.linalg.norm(got), np.linalg.norm(numeric), 1e-12))
    return errors


# -- everything, for `derive prove` --------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One line of a proof: what was checked, whether it holds, how long it took."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        return f"{status} {self.name} ({self.seconds:.2f} s){': ' + self.detail if self.detail else ''}"


FD_TOLERANCE = 1e-6


def prove(cell: Cell, *, reference: Reference | None = None, sizes: tuple[int, ...] = (2, 3),
          steps: tuple[int, ...] = (1, 2), kernel: object | None = None) -> Iterator[Check]:
    """Every check of a cell, one at a time: the derivative identities, the
    derived VJPs against the brute force (n_h = 2; each ``n_x`` in ``sizes``,
    each number of ``steps``), a ``reference`` forward against the cell's
    own when given, then finite differences of the generated kernel."""
    start = time.perf_counter()
    yield Check("derivative identities of the activations", derivative_identities_hold(), time.perf_counter() - start)
    if reference is not None:
        start = time.perf_counter()
        swap, _ = opaque_functions()
        prob = make_problem(cell, n_x=sizes[0], n_h=2, steps=1)
        ours = own_reference(cell)(prob.params, prob.xs[0], prob.state0, _namespace(swap))
        theirs = reference(prob.params, prob.xs[0], prob.state0, _namespace(swap))
        missing = sorted(set(ours) - set(theirs))
        bad = missing or [k for k in sorted(ours) if not all(equal_exactly(list(zip(ours[k], theirs[k]))))]
        yield Check("the reference step equals the cell's forward", not bad, time.perf_counter() - start,
                    f"differs for {bad}" if bad else "")
    for n_x in sizes:
        for t in steps:
            start = time.perf_counter()
            bad = mismatches(cell, n_x, t, reference=reference)
            yield Check(f"derived VJPs = brute force, n_h=2 n_x={n_x} T={t}", not bad, time.perf_counter() - start,
                        f"differ for {bad}" if bad else "")
    if kernel is None:
        from .kernels import compile as compile_kernel

        kernel = compile_kernel(cell)
    start = time.perf_counter()
    errors = finite_differences(kernel)
    worst = max(errors, key=errors.get)
    yield Check(f"kernel gradients = finite differences (float64, < {FD_TOLERANCE:g})", errors[worst] < FD_TOLERANCE,
                time.perf_counter() - start, f"max relative error {errors[worst]:.1e} ({worst})")
