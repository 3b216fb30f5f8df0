"""Symbolic proofs: the derived VJPs equal brute-force derivatives, exactly.

At n_h = 2, n_x = 2 and 3, batch 1, every matrix is expanded into scalar
symbols. The forward of each cell is written again here, by hand, from the
published equations (not from ``derive``'s cells); SymPy differentiates the
scalar loss L = Σ_t ⟨δy(t), y(t)⟩ + Σ_s ⟨δs(T), s(T)⟩ with respect to every
parameter, input and initial state entry, and the result must equal what
the derived backward equations compute, with ``expand(a - b) == 0``.
σ and tanh stay opaque; their derivative identities are proved on their own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
import sympy
from sympy import Matrix

import derive
from derive import proof
from derive.derivation import Adjoint, Backward

SWAP, RULES = proof.opaque_functions()
S, Th = SWAP[derive.functions.sigmoid], SWAP[sympy.tanh]


def ew(f: Callable[[sympy.Expr], sympy.Expr], m: Matrix) -> Matrix:
    return m.applyfunc(f)


def had(a: Matrix, b: Matrix) -> Matrix:
    return a.multiply_elementwise(b)


def one_like(m: Matrix) -> Matrix:
    return Matrix.ones(*m.shape)


# -- independent forwards, one step each: (params, x, states) -> states ----------
def rnn_step(p: dict, x: Matrix, s: dict) -> dict:
    a = ew(Th, p["W_a"] * Matrix.vstack(s["a"], x) + p["b_a"])
    return {"a": a}


def rnn_relu_step(p: dict, x: Matrix, s: dict) -> dict:
    # torch.nn.RNN(nonlinearity="relu"), with relu opaque like σ and tanh (its derivative rule is proved apart)
    a = ew(SWAP[derive.functions.relu], p["W_a"] * Matrix.vstack(s["a"], x) + p["b_a"])
    return {"a": a}


def gru_simple_step(p: dict, x: Matrix, s: dict) -> dict:
    c = s["c"]
    cx = Matrix.vstack(c, x)
    gu = ew(S, p["W_u"] * cx + p["b_u"])
    h = ew(Th, p["W_h"] * cx + p["b_h"])
    return {"c": had(gu, h) + had(one_like(gu) - gu, c)}


def gru_step(p: dict, x: Matrix, s: dict, reset: bool = True) -> dict:
    c = s["c"]
    cx = Matrix.vstack(c, x)
    gr = ew(S, p["W_r"] * cx + p["b_r"]) if reset else one_like(c)
    gu = ew(S, p["W_u"] * cx + p["b_u"])
    h = ew(Th, p["W_h"] * Matrix.vstack(had(gr, c), x) + p["b_h"])
    return {"c": had(gu, h) + had(one_like(gu) - gu, c)}


def gru_torch_step(p: dict, x: Matrix, s: dict, reset: bool = True) -> dict:
    # torch.nn.GRU: r, z, n = ...; h' = (1 - z) * n + z * h
    h_prev = s["c"]
    hx = Matrix.vstack(h_prev, x)
    r = ew(S, p["W_r"] * hx + p["b_r"]) if reset else one_like(h_prev)
    z = ew(S, p["W_z"] * hx + p["b_z"])
    n = ew(Th, p["W_hx"] * x + p["b_hx"] + had(r, p["W_hc"] * h_prev + p["b_hc"]))
    return {"c": had(one_like(z) - z, n) + had(z, h_prev)}


def lstm_step(p: dict, x: Matrix, s: dict) -> dict:
    # torch.nn.LSTM: i, f, g, o; c' = f*c + i*g; h' = o*tanh(c')
    hx = Matrix.vstack(s["a"], x)
    i = ew(S, p["W_i"] * hx + p["b_i"])
    f = ew(S, p["W_f"] * hx + p["b_f"])
    g = ew(Th, p["W_h"] * hx + p["b_h"])
    o = ew(S, p["W_o"] * hx + p["b_o"])
    c = had(f, s["c"]) + had(i, g)
    return {"a": had(o, ew(Th, c)), "c": c}


def mgu_step(p: dict, x: Matrix, s: dict) -> dict:
    # Zhou et al. 2016: f = σ(W_f [h, x] + b_f); h~ = tanh(W_h [f ⊙ h, x] + b_h); h' = (1 - f) ⊙ h + f ⊙ h~
    c = s["c"]
    f = ew(S, p["W_f"] * Matrix.vstack(c, x) + p["b_f"])
    h = ew(Th, p["W_h"] * Matrix.vstack(had(f, c), x) + p["b_h"])
    return {"c": had(one_like(f) - f, c) + had(f, h)}


def lstm_peephole_step(p: dict, x: Matrix, s: dict) -> dict:
    # Gers & Schmidhuber 2000: i and f peep at c(t-1), o at c(t), through diagonal weights
    hx = Matrix.vstack(s["a"], x)
    i = ew(S, p["W_i"] * hx + p["b_i"] + had(p["p_i"], s["c"]))
    f = ew(S, p["W_f"] * hx + p["b_f"] + had(p["p_f"], s["c"]))
    g = ew(Th, p["W_h"] * hx + p["b_h"])
    c = had(f, s["c"]) + had(i, g)
    o = ew(S, p["W_o"] * hx + p["b_o"] + had(p["p_o"], c))
    return {"a": had(o, ew(Th, c)), "c": c}


def min_gru_step(p: dict, x: Matrix, s: dict) -> dict:
    # Feng et al. 2024: z = σ(Linear(x)); h~ = Linear(x); h' = (1 - z) ⊙ h + z ⊙ h~
    z = ew(S, p["W_u"] * x + p["b_u"])
    h = p["W_h"] * x + p["b_h"]
    return {"c": had(one_like(z) - z, s["c"]) + had(z, h)}


def min_lstm_step(p: dict, x: Matrix, s: dict) -> dict:
    # Feng et al. 2024: f, i = σ(Linear(x)); f', i' = f / (f + i), i / (f + i); h' = f' ⊙ h + i' ⊙ h~
    f = ew(S, p["W_f"] * x + p["b_f"])
    i = ew(S, p["W_i"] * x + p["b_i"])
    h = p["W_h"] * x + p["b_h"]
    total = f + i
    return {"c": Matrix([f[k] * s["c"][k] / total[k] + i[k] * h[k] / total[k] for k in range(len(f))])}


def indrnn_step(p: dict, x: Matrix, s: dict) -> dict:
    # Li et al. 2018: h' = relu(W x + u ⊙ h + b)
    relu = SWAP[derive.functions.relu]
    return {"c": ew(relu, p["W"] * x + had(p["u"], s["c"]) + p["b"])}


STEPS = {
    "rnn": rnn_step,
    "rnn_relu": rnn_relu_step,
    "gru_simple": gru_simple_step,
    "gru": gru_step,
    "gru_torch": gru_torch_step,
    "lstm": lstm_step,
    "mgu": mgu_step,
    "lstm_peephole": lstm_peephole_step,
    "min_gru": min_gru_step,
    "min_lstm": min_lstm_step,
    "indrnn": indrnn_step,
}


def independent(name: str) -> proof.Reference:
    """The hand-written forward of ``name`` as a reference step for the proof."""
    return lambda p, x, s, f: STEPS[name](p, x, s)


def mismatches(name: str, n_x: int, steps: int, backward: Backward | None = None) -> list[str]:
    """Every entry where the derived result differs from the brute force
    of the independent forward."""
    return proof.mismatches(derive.cell(name), n_x, steps, reference=independent(name), backward=backward)


CASES = [(name, n_x, steps) for name in derive.NAMES for n_x in (2, 3) for steps in (1, 2)]
"""Every cell at n_x = 2 and 3, one and two steps (the two-step proofs of
the LSTMs and minLSTM's fractions included: the factored denominators and
the packed polynomials of :func:`proof.equal_exactly` take each under a few
seconds)."""

@pytest.mark.parametrize(("name", "n_x", "steps"), CASES, ids=[f"{c}-nx{n}-T{t}" for c, n, t in CASES])
def test_derived_vjps_equal_brute_force(name: str, n_x: int, steps: int) -> None:
    start = time.perf_counter()
    bad = mismatches(name, n_x, steps)
    elapsed = time.perf_counter() - start
    assert not bad, f"{name} n_x={n_x} T={steps}: derived gradients differ for {bad}"
    print(f"{name} n_x={n_x} T={steps}: proved in {elapsed:.2f} s")


def test_derivative_identities() -> None:
    assert proof.derivative_identities_hold()


def _drop_term(backward: Backward, target: str) -> Backward:
    """The same derivation with one term of δtarget removed."""
    adjoints = []
    for a in backward.adjoints:
        if a.target == target:
            first = sympy.Add.make_args(a.expr)[0]
            adjoints.append(Adjoint(a.target, a.expr - first))
        else:
            adjoints.append(a)
    return Backward(tuple(adjoints), backward.weight_grads, backward.bias_grads, backward.outgoing)


@pytest.mark.parametrize(("name", "target"), [("gru", "c_prev"), ("lstm", "c"), ("gru_torch", "x")])
def test_a_mutated_derivation_fails_the_proof(name: str, target: str) -> None:
    mutated = _drop_term(derive.cell(name).backward, target)
    bad = mismatches(name, 2, 1 if name == "lstm" else 2, backward=mutated)
    assert bad, f"dropping a term of δ{target} in {name} went unnoticed"


def test_a_wrong_forward_fails_the_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    """The brute force really depends on the independent forward: with the
    update mix reversed, the derived equations no longer match it."""

    def swapped(p: dict, x: Matrix, s: dict) -> dict:
        c = gru_simple_step(p, x, s)["c"]
        return {"c": 2 * s["c"] - c + 0 * c}

    monkeypatch.setitem(STEPS, "gru_simple", swapped)
    assert mismatches("gru_simple", 2, 1)


def _divides(expr: sympy.Expr) -> bool:
    return any(a.is_Pow and a.exp.is_negative for a in sympy.preorder_traversal(expr))


DIVIDING = [(a.target) for a in derive.cell("min_lstm").backward.adjoints if _divides(a.expr)]


@pytest.mark.parametrize("target", DIVIDING)
def test_a_sign_flip_in_a_division_fails_the_two_step_proof(target: str) -> None:
    """minLSTM's adjoints that divide (through f/(f + i)), each negated in
    turn: the two-step proof with factored denominators reports it."""
    backward = derive.cell("min_lstm").backward
    adjoints = tuple(Adjoint(a.target, -a.expr) if a.target == target else a for a in backward.adjoints)
    flipped = Backward(adjoints, backward.weight_grads, backward.bias_grads, backward.outgoing)
    bad = mismatches("min_lstm", 2, 2, backward=flipped)
    assert bad and "x0" in bad, f"negating δ{target} in min_lstm went unnoticed: {bad}"


def _random_expression(rng: random.Random, symbols: list[sympy.Symbol], depth: int) -> sympy.Expr:
    """A random rational expression in ``symbols`` with opaque σ and tanh
    applications; every denominator is a square plus one (never 0)."""
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([*symbols, sympy.Integer(rng.randint(-3, 3))])
    a, b = (_random_expression(rng, symbols, depth - 1) for _ in range(2))
    kind = rng.choice(["add", "mul", "div", "fn", "pow"])
    if kind == "add":
        return a - b if rng.random() < 0.5 else a + b
    if kind == "mul":
        return a * b
    if kind == "div":
        return a / (b**2 + 1)
    if kind == "fn":
        return rng.choice([S, Th])(a)
    return a ** rng.randint(0, 3)


def _expanded_arguments(expr: sympy.Expr) -> sympy.Expr:
    """Every opaque application's argument expanded (the names :class:`proof.Canon` gives)."""
    return expr.replace(lambda e: isinstance(e, (S, Th)), lambda e: e.func(sympy.expand(e.args[0])))


def test_equal_exactly_agrees_with_sympy_on_random_fractions() -> None:
    """:func:`proof.equal_exactly` (factored denominators, packed
    polynomials) against SymPy's ``cancel`` on 96 random pairs, four kinds
    in turn: a fraction and a rewriting of it (``together`` or ``expand``);
    a derivative (the quotient rule mixes 1/q and 1/q² of one q) and its
    ``together``; a difference that cancels to 0 against 0; a rewriting
    with a small term added (not equal). The answers agree, and both occur."""
    rng = random.Random(7)
    symbols = list(sympy.symbols("a b c d"))
    a = symbols[0]
    pairs, expected = [], []
    for k in range(96):
        e = _random_expression(rng, symbols, 4)
        rewrite = sympy.together if k % 8 < 4 else sympy.expand
        kind = k % 4
        if kind == 0:
            pair = (e, rewrite(e))
        elif kind == 1:
            pair = (sympy.diff(e, a), sympy.together(sympy.diff(e, a)))
        elif kind == 2:
            pair = (rewrite(e) - e, sympy.Integer(0))
        else:
            pair = (e, rewrite(e) + rng.choice(symbols) / (rng.choice(symbols) ** 2 + 1) * rng.choice([-1, 2]))
        pairs.append(pair)
        expected.append(sympy.cancel(sympy.together(_expanded_arguments(pair[0] - pair[1]))) == 0)
    assert proof.equal_exactly(pairs) == expected
    assert 40 < sum(expected) < 90


def test_a_polynomial_too_high_in_degree_is_refused() -> None:
    """The packed exponents cannot carry into a neighbour: a degree that
    would overflow a field raises rather than compare wrongly."""
    x = proof.Polynomial.variable(1)
    assert (x * x + x).terms == {2 << proof.Polynomial.FIELD: 1, 1 << proof.Polynomial.FIELD: 1}
    with pytest.raises(OverflowError):
        x ** (1 << proof.Polynomial.FIELD)


# -- cross-cell identities ---------------------------------------------------------
def _preactivations(W: Matrix, b: Matrix, c: Matrix, x: Matrix) -> set[sympy.Expr]:
    return {sympy.expand(e) for e in W * Matrix.vstack(c, x) + b}


def _sigma_with(overrides: list[tuple[set[sympy.Expr], Callable[[sympy.Expr], sympy.Expr]]]) -> type[sympy.Function]:
    """An opaque σ, except on the given pre-activations where it is forced
    (to 1 for Gr ≡ 1, to 1 − σ for a reversed update gate)."""

    class Sigma(sympy.Function):
        @classmethod
        def eval(cls, u: sympy.Expr) -> sympy.Expr:
            e = sympy.expand(u)
            for args, value in overrides:
                if e in args:
                    return value(u)
            return None  # stays unevaluated until its argument is known; S otherwise

    return Sigma


def _forward(name: str, params: dict, x: Matrix, c: Matrix, sigma: type[sympy.Function]) -> Matrix:
    """One step of the *derived* cell (its own equations) on symbols."""
    prob = proof.Problem(params, [x], {"c": c}, [sympy.zeros(*c.shape)], {"c": sympy.zeros(*c.shape)})
    ys, _, _ = proof.run(derive.cell(name), prob, functions={**SWAP, derive.functions.sigmoid: sigma})
    return ys[0].replace(sigma, S)


def _same(a: Matrix, b: Matrix) -> bool:
    return all(sympy.expand(u - v) == 0 for u, v in zip(a, b))


def test_gru_with_reset_one_is_gru_simple() -> None:
    """Gr ≡ 1 in the full GRU gives the simplified GRU, exactly."""
    prob = proof.make_problem(derive.cell("gru"), n_x=3, n_h=2)
    p, x, c = prob.params, prob.xs[0], prob.state0["c"]
    reset_one = _sigma_with([(_preactivations(p["W_r"], p["b_r"], c, x), lambda u: sympy.Integer(1))])
    full = _forward("gru", p, x, c, reset_one)
    simple = _forward("gru_simple", {k: p[k] for k in ("W_u", "b_u", "W_h", "b_h")}, x, c, S)
    assert _same(full, simple)
    assert not _same(_forward("gru", p, x, c, S), simple)  # and Gr matters when it is not 1


def test_gru_and_gru_torch_coincide_when_reset_is_one() -> None:
    """With Gr ≡ 1, the thread's GRU with Gu = 1 − Gz, W_h = [W_hc, W_hx] and
    b_h = b_hx + b_hc computes exactly PyTorch's GRU: the two variants differ
    only by where the reset acts and by the direction of the update gate."""
    prob = proof.make_problem(derive.cell("gru_torch"), n_x=3, n_h=2)
    p, x, c = prob.params, prob.xs[0], prob.state0["c"]
    reset = _preactivations(p["W_r"], p["b_r"], c, x)
    update = _preactivations(p["W_z"], p["b_z"], c, x)
    torch_gru = _forward("gru_torch", p, x, c, _sigma_with([(reset, lambda u: sympy.Integer(1))]))
    mapped = {
        "W_r": p["W_r"],
        "b_r": p["b_r"],
        "W_u": p["W_z"],
        "b_u": p["b_z"],
        "W_h": Matrix.hstack(p["W_hc"], p["W_hx"]),
        "b_h": p["b_hx"] + p["b_hc"],
    }
    one = lambda u: sympy.Integer(1)  # noqa: E731
    thread_gru = _forward("gru", mapped, x, c, _sigma_with([(reset, one), (update, lambda u: 1 - S(u))]))
    assert _same(torch_gru, thread_gru)
    # without the direction mapping they differ: the mapping is what makes them equal
    unmapped = _forward("gru", mapped, x, c, _sigma_with([(reset, one)]))
    assert not _same(torch_gru, unmapped)
