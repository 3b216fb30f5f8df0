"""How the cells beyond the thread relate to the thread's cells, as the site
states it ("Beyond the thread"), checked on the derived cells themselves.

* the peephole LSTM with its three peepholes at zero is the LSTM: the same
  equations (symbolically, every output and gradient of one step) and the
  same kernels (numerically, to rounding);
* the MGU is the full GRU with one gate for both: Gr = Gu = Gf (the same
  weights and bias for both gates);
* minGRU is the simplified GRU with c(t−1) removed from the gate and from
  the candidate (their state columns at zero) and the candidate's tanh removed.
"""

from __future__ import annotations

import numpy as np
import sympy
from sympy import Matrix

import derive
from derive import kernels, proof

SWAP, _ = proof.opaque_functions()
S = SWAP[derive.functions.sigmoid]


class Identity(sympy.Function):
    """tanh removed: the identity, applied entry-wise."""

    nargs = 1

    @classmethod
    def eval(cls, u: sympy.Expr) -> sympy.Expr:
        return u


def one_step(name: str, params: dict[str, Matrix], x: Matrix, state0: dict[str, Matrix],
             swap: dict | None = None) -> dict[str, Matrix]:
    """Outputs and gradients of one step of the derived cell ``name`` on
    symbols, with activations opaque (or as ``swap`` says)."""
    cell = derive.cell(name)
    n_h = next(iter(state0.values())).shape[0]
    dy = Matrix(sympy.symbols(f"dy0:{n_h}"))
    dstate = {s: Matrix(sympy.symbols(f"ds_{s}0:{n_h}")) for s in state0}
    prob = proof.Problem(params, [x], state0, [dy], dstate)
    ys, final, grads = proof.run(cell, prob, functions={**SWAP, **(swap or {})})
    return {"y": ys[0], **{f"final_{k}": v for k, v in final.items()}, **grads}


def same(a: Matrix, b: Matrix) -> bool:
    return a.shape == b.shape and all(sympy.expand(u - v) == 0 for u, v in zip(a, b))


def test_lstm_peephole_with_zero_peepholes_is_lstm_symbolically() -> None:
    prob = proof.make_problem(derive.cell("lstm_peephole"), n_x=2, n_h=2)
    zero = sympy.zeros(2, 1)
    peep = one_step("lstm_peephole", {**prob.params, "p_i": zero, "p_f": zero, "p_o": zero}, prob.xs[0], prob.state0)
    plain = one_step("lstm", {k: v for k, v in prob.params.items() if not k.startswith("p_")}, prob.xs[0], prob.state0)
    shared = set(plain) & set(peep)
    assert {"y", "W_i", "b_f", "W_o", "x0", "c0", "a0"} <= shared
    assert all(same(peep[k], plain[k]) for k in shared), [k for k in shared if not same(peep[k], plain[k])]
    # and the peepholes matter when they are not zero
    assert not same(one_step("lstm_peephole", prob.params, prob.xs[0], prob.state0)["y"], plain["y"])


def test_lstm_peephole_with_zero_peepholes_is_lstm_in_the_kernels() -> None:
    rng = np.random.default_rng(3)
    T, B, n_x, n_h = 7, 3, 4, 5
    peep, plain = kernels.load("lstm_peephole"), kernels.load("lstm")
    params = plain.init_params(n_x, n_h, seed=3)
    with_zero = {**params, **{p: np.zeros(n_h) for p in ("p_i", "p_f", "p_o")}}
    xs = rng.standard_normal((T, B, n_x))
    state0 = {"a": rng.standard_normal((B, n_h)), "c": rng.standard_normal((B, n_h))}
    dys = rng.standard_normal((T, B, n_h))
    dstate = {"a": rng.standard_normal((B, n_h)), "c": rng.standard_normal((B, n_h))}
    ys_p, cache_p = peep.forward(with_zero, xs, state0)
    ys_l, cache_l = plain.forward(params, xs, state0)
    assert np.max(np.abs(ys_p - ys_l)) <= 1e-15
    g_p, g_l = peep.backward(cache_p, dys, dstate), plain.backward(cache_l, dys, dstate)
    for key, value in g_l.items():
        error = np.max(np.abs(g_p[key] - value)) / max(np.max(np.abs(value)), 1e-300)
        assert error <= 1e-15, f"{key}: relative error {error:.1e}"
    assert set(g_p) - set(g_l) == {"p_i", "p_f", "p_o"}


def test_mgu_is_the_full_gru_with_one_gate_for_both() -> None:
    """Gr = Gu = Gf: the GRU's reset and update gates given the MGU's forget-gate weights and bias."""
    prob = proof.make_problem(derive.cell("mgu"), n_x=3, n_h=2)
    p = prob.params
    mgu = one_step("mgu", p, prob.xs[0], prob.state0)
    as_gru = {"W_r": p["W_f"], "b_r": p["b_f"], "W_u": p["W_f"], "b_u": p["b_f"], "W_h": p["W_h"], "b_h": p["b_h"]}
    gru = one_step("gru", as_gru, prob.xs[0], prob.state0)
    assert same(gru["y"], mgu["y"])
    # the gradient on the shared gate is the sum of the GRU's two gates' gradients
    assert same(gru["W_r"] + gru["W_u"], mgu["W_f"]) and same(gru["b_r"] + gru["b_u"], mgu["b_f"])
    assert same(gru["x0"], mgu["x0"]) and same(gru["c0"], mgu["c0"])
    # with two different gates, it is no longer the MGU
    other = proof.make_problem(derive.cell("gru"), n_x=3, n_h=2).params
    assert not same(one_step("gru", {**as_gru, "W_r": other["W_r"]}, prob.xs[0], prob.state0)["y"], mgu["y"])


def test_min_gru_is_the_simplified_gru_without_the_state_in_gate_and_candidate_nor_tanh() -> None:
    prob = proof.make_problem(derive.cell("min_gru"), n_x=3, n_h=2)
    p = prob.params
    no_state = sympy.zeros(2, 2)  # the columns of W_u and W_h that read c(t−1)
    as_simple = {"W_u": Matrix.hstack(no_state, p["W_u"]), "b_u": p["b_u"],
                 "W_h": Matrix.hstack(no_state, p["W_h"]), "b_h": p["b_h"]}
    simple = one_step("gru_simple", as_simple, prob.xs[0], prob.state0, swap={sympy.tanh: Identity})
    minimal = one_step("min_gru", p, prob.xs[0], prob.state0)
    # the forward step (the derived backward writes tanh' as 1 − h², in the cached value, so it is
    # the forward that the substitution carries over; min_gru's own gradients are proved apart)
    assert same(simple["y"], minimal["y"]) and same(simple["final_c"], minimal["final_c"])
    # both removals are needed: with tanh kept, or with the state columns, it differs
    with_tanh = one_step("gru_simple", as_simple, prob.xs[0], prob.state0)
    assert not same(with_tanh["y"], minimal["y"])
    full = proof.make_problem(derive.cell("gru_simple"), n_x=3, n_h=2).params
    with_state = {**as_simple, "W_u": full["W_u"]}
    assert not same(one_step("gru_simple", with_state, prob.xs[0], prob.state0, swap={sympy.tanh: Identity})["y"],
                    minimal["y"])
