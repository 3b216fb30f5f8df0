"""The activation registry: every element-wise function a cell may use.

One :class:`Activation` entry holds all that the pipeline needs to know of
a function: its SymPy class (whose ``fdiff`` states the derivative, in the
function's own output where possible, so that the derivation rewrites it
in a cached forward value), its names in ``.cell`` files, its LaTeX and
text spelling, and the NumPy expression a kernel prints for it. Adding an
activation is one entry in :data:`REGISTRY`; the printers, the parser, the
validation and the proofs read it from here.

SymPy has ``tanh`` and ``exp`` but no logistic function: ``sigmoid`` is a
SymPy ``Function`` whose derivative is σ(1 − σ) (``diff(1/(1 + exp(-z)))``
would give a form that overflows below z ≈ −355).

Three *indicator* functions (``step``, ``inside01``) only appear in
derivatives (ReLU's and hard-σ's); their own derivative is zero wherever
it exists, and the kernels never differentiate them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


class step(sympy.Function):  # noqa: N801
    """The unit step with step(0) = 0: 1 where its argument is > 0, else 0.

    ReLU's derivative, written in ReLU's output y: step(y). The convention
    at 0 (derivative 0) is PyTorch's."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(0)


class inside01(sympy.Function):  # noqa: N801
    """1 where 0 < y < 1, else 0: hard-σ's derivative (×1/6) in its output y."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(0)


class relu(sympy.Function):  # noqa: N801
    """max(z, 0); its derivative is step(relu(z)) (0 at z = 0, as in PyTorch)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return step(relu(self.args[0]))

    def _eval_rewrite_as_Max(self, z: sympy.Expr, **kwargs: object) -> sympy.Expr:
        return sympy.Max(z, 0)


class softplus(sympy.Function):  # noqa: N801
    """log(1 + e^z); its derivative σ(z) is 1 − e^(−softplus(z)), in its output."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return 1 - sympy.exp(-softplus(self.args[0]))

    def _eval_rewrite_as_log(self, z: sympy.Expr, **kwargs: object) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(z))


class hard_sigmoid(sympy.Function):  # noqa: N801
    """PyTorch's hard-σ, clip(z/6 + 1/2, 0, 1); derivative inside01(y)/6."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return inside01(hard_sigmoid(self.args[0])) / 6


class identity(sympy.Function):  # noqa: N801
    """z itself: a linear node (minGRU's candidate). Evaluates away at once."""

    nargs = 1

    @classmethod
    def eval(cls, z: sympy.Expr) -> sympy.Expr:
        return z


@dataclass(frozen=True)
class Activation:
    """One element-wise function and every spelling of it.

    ``numpy`` is a format string over the printed argument (``{}``) that the
    kernels evaluate with ``np`` and the runtime's functions in scope;
    ``runtime`` names the runtime functions it calls. ``numba`` is the
    same over one scalar in a Numba kernel's fused loop, with the functions
    of ``derive.runtime_numba`` (typed per dtype, vectorising) in scope. ``reference`` is a
    plain NumPy implementation for the numeric derivative check; ``indicator``
    marks the step functions that only appear inside derivatives.
    """

    name: str
    function: type[sympy.Function]
    aliases: tuple[str, ...]
    latex: str
    text: str
    numpy: str
    runtime: tuple[str, ...] = ()
    reference: Callable[..., object] | None = None
    indicator: bool = False
    numba: str = "{}"


def _np():  # noqa: ANN202 - numpy imported lazily: the registry is needed without it
    import numpy

    return numpy


REGISTRY: tuple[Activation, ...] = (
    Activation("sigmoid", sigmoid, ("σ", "sigma"), r"\sigma", "σ", "sigmoid({})", ("sigmoid",),
               lambda z: 1 / (1 + _np().exp(-z)), numba="sigmoid({})"),
    Activation("tanh", sympy.tanh, (), r"\tanh", "tanh", "np.tanh({})", (), lambda z: _np().tanh(z),
               numba="tanh({})"),
    Activation("relu", relu, ("ReLU",), r"\operatorname{relu}", "relu", "np.maximum({}, 0)", (),
               lambda z: _np().maximum(z, 0), numba="relu({})"),
    Activation("softplus", softplus, (), r"\operatorname{softplus}", "softplus", "np.logaddexp({}, 0)", (),
               lambda z: _np().logaddexp(z, 0), numba="softplus({})"),
    Activation("hard_sigmoid", hard_sigmoid, ("hard_σ",), r"\operatorname{hard\sigma}", "hard_σ",
               "hard_sigmoid({})", ("hard_sigmoid",), lambda z: _np().clip(z / 6 + 0.5, 0, 1),
               numba="hard_sigmoid({})"),
    Activation("exp", sympy.exp, (), r"\exp", "exp", "np.exp({})", (), lambda z: _np().exp(z),
               numba="np.exp({})"),
    Activation("identity", identity, ("id",), "", "", "{}", (), lambda z: z),
    Activation("step", step, (), r"\operatorname{step}", "step", "step({})", ("step",),
               lambda y: (y > 0) * 1.0, indicator=True, numba="step({})"),
    Activation("inside01", inside01, (), r"\mathbb{1}_{(0,1)}", "1_(0,1)", "inside01({})", ("inside01",),
               lambda y: ((y > 0) & (y < 1)) * 1.0, indicator=True, numba="inside01({})"),
)
"""Every element-wise function a cell may use (and the indicators of their
derivatives), in the order they are listed to users."""

_BY_CLASS: dict[type, Activation] = {a.function: a for a in REGISTRY}
_BY_NAME: dict[str, Activation] = {n: a for a in REGISTRY for n in (a.name, *a.aliases)}

ACTIVATIONS: tuple[type[sympy.Function], ...] = tuple(a.function for a in REGISTRY if not a.indicator)
"""The SymPy classes of the activations a cell may apply."""


def activation(name: str) -> Activation:
    """The entry called ``name`` (or one of its aliases); a ``KeyError``
    naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown function {name!r}; known: {', '.join(known_names())}") from None


def of(expr: sympy.Basic) -> Activation | None:
    """The entry of a function application (``sigmoid(z)``), or None."""
    return _BY_CLASS.get(type(expr))


def known_names() -> list[str]:
    """The names a cell may call, for error messages and ``--help``."""
    return [a.name for a in REGISTRY if not a.indicator]


def install_printers(printer: type, spell: Callable[..., str]) -> None:
    """Give ``printer`` (a SymPy printer class) one ``_print_<Function>``
    method per registry entry, each calling ``spell(self, entry, expr)``:
    a printer spells every activation the same way, and a new entry is
    printed everywhere at once."""
    for entry in REGISTRY:
        def method(self, expr, *args, entry=entry, **kwargs):  # noqa: ANN001, ANN202
            return spell(self, entry, expr, *args, **kwargs)

        setattr(printer, f"_print_{entry.function.__name__}", method)


def is_gate(expr: sympy.Basic) -> bool:
    """A σ-family function (values in (0, 1)): σ or hard-σ."""
    return isinstance(expr, (sigmoid, hard_sigmoid))


__all__ = [
    "ACTIVATIONS",
    "REGISTRY",
    "Activation",
    "activation",
    "hard_sigmoid",
    "identity",
    "inside01",
    "install_printers",
    "is_gate",
    "known_names",
    "of",
    "relu",
    "sigmoid",
    "softplus",
    "step",
]
