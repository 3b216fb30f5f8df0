"""Elementwise functions SymPy lacks: the logistic function σ.

SymPy has ``tanh`` but no logistic function. ``sigmoid`` is a SymPy
``Function`` whose derivative is σ(1 − σ), so that differentiating a gate
gives the cached-value form directly (``diff(1/(1 + exp(-z)))`` would give a
form that overflows below z ≈ −355).
"""

from __future__ import annotations

import sympy


class sigmoid(sympy.Function):  # noqa: N801 - named like sympy.tanh
    """The logistic function σ(z) = 1 / (1 + e^(−z)), applied elementwise."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        if argindex != 1:
            raise sympy.ArgumentIndexError(self, argindex)
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, z: sympy.Expr, **kwargs: object) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-z))


ACTIVATIONS: tuple[type[sympy.Function], ...] = (sigmoid, sympy.tanh)
"""The activation functions a cell may use; their derivatives are rewritten
in terms of the cached activation, never re-evaluated."""
