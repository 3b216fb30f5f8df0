"""The :class:`Cell`: one recurrent cell's step as ordered symbolic equations.

A cell file (``derive/cells/*.py``) describes a step with a
:class:`CellBuilder`; everything else — the backward equations, the LaTeX,
the kernels, the site — is derived from the :class:`Cell` it builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import sympy

from .graph import Affine, Elementwise, Node, Param, Size, Vector

if TYPE_CHECKING:
    from .derivation import Backward, Jacobian
    from .render.lambdified import StepFunctions


@dataclass(frozen=True)
class State:
    """A recurrent state: ``prev`` is its value at t−1 (an input of the
    step), ``name`` the node that computes its value at t."""

    name: str
    prev: str


@dataclass(frozen=True)
class Cell:
    """One recurrent cell: its vectors, parameters and ordered equations.

    Vectors are columns; a batch of ``B`` sequences stacks ``B`` columns
    side by side, so every equation holds for any batch size.
    """

    name: str
    title: str
    summary: str
    vectors: dict[str, Vector]
    params: dict[str, Param]
    nodes: tuple[Node, ...]
    states: tuple[State, ...]
    output: str
    inputs: tuple[str, ...] = ("x",)

    # -- structure -----------------------------------------------------
    def node(self, name: str) -> Node:
        """The node that computes vector ``name``."""
        for node in self.nodes:
            if node.target == name:
                return node
        raise KeyError(f"cell {self.name!r} has no node {name!r}")

    def param_shape(self, name: str, n_x: int, n_h: int) -> tuple[int, ...]:
        """The concrete shape of parameter ``name`` at sizes ``n_x``, ``n_h``."""
        sizes = {"n_x": n_x, "n_h": n_h}
        p = self.params[name]
        if p.is_bias:
            return (sizes[p.rows],)
        return (sizes[p.rows], sum(sizes[c] for c in p.cols))

    def weight_blocks(self, weight: str) -> list[tuple[str, Size]]:
        """The column blocks of ``weight``: (part label, size) in order."""
        for node in self.nodes:
            if isinstance(node, Affine) and node.weight == weight:
                return [(self.vectors[p].block, self.vectors[p].size) for p in node.parts]
        raise KeyError(f"cell {self.name!r} has no weight {weight!r}")

    def forward_equations(self) -> list[sympy.Eq]:
        """The step's equations, in order, as SymPy ``Eq`` objects.

        Vectors are symbols treated elementwise (a product is ⊙);
        ``Concat(W, p, q)`` stands for ``W [p; q]``.
        """
        return [sympy.Eq(sympy.Symbol(n.target), _node_expr(n), evaluate=False) for n in self.nodes]

    def shown_equations(self) -> list[sympy.Eq]:
        """The equations as a reader sees them: hidden intermediate nodes
        (pre-activations, Gr ⊙ c(t−1)) substituted into their consumers."""
        return [
            sympy.Eq(sympy.Symbol(n.target), self.expand_hidden(_node_expr(n)), evaluate=False)
            for n in self.nodes
            if n.show
        ]

    def expand_hidden(self, expr: sympy.Expr) -> sympy.Expr:
        """Substitute every hidden node in ``expr`` by its definition."""
        hidden = {sympy.Symbol(n.target): _node_expr(n) for n in self.nodes if not n.show}
        for _ in range(len(hidden) + 1):
            new = expr.xreplace(hidden)
            if new == expr:
                return new
            expr = new
        return expr

    # -- derived ---------------------------------------------------------
    @cached_property
    def backward(self) -> Backward:
        """The per-step VJPs and the BPTT recurrence, derived from the
        forward equations (see :mod:`derive.derivation`)."""
        from .derivation import derive_backward

        return derive_backward(self)

    @cached_property
    def jacobians(self) -> list[Jacobian]:
        """∂s(t)/∂s′(t−1) for every pair of states, derived in forward mode."""
        from .derivation import state_jacobians

        return state_jacobians(self)

    def latex(self, which: Literal["forward", "backward", "jacobian", "all"] = "all") -> str:
        """The cell's equations as one KaTeX-compatible ``aligned`` block."""
        from .render.latex import cell_latex

        return cell_latex(self, which)

    def text(self, which: Literal["forward", "backward", "jacobian", "all"] = "all") -> str:
        """The cell's equations as readable plain text (one per line)."""
        from .render.text import cell_text

        return cell_text(self, which)

    def lambdify(self) -> StepFunctions:
        """The per-step forward and VJP as NumPy functions, built now with
        ``sympy.lambdify`` from the same derived equations as the kernels."""
        from .render.lambdified import StepFunctions

        return StepFunctions(self)

    def _repr_latex_(self) -> str:
        return "$$" + self.latex("forward") + "$$"

    def __repr__(self) -> str:
        return f"<Cell {self.name}: {self.title}>"


def _node_expr(node: Node) -> sympy.Expr:
    return node.expr() if isinstance(node, Affine) else node.expr


def _latex_name(name: str) -> str:
    """``W_hx`` → ``W_{hx}``: the first underscore starts the subscript."""
    base, _, sub = name.partition("_")
    return f"{base}_{{{sub}}}" if sub else base


class CellBuilder:
    """Describes a cell step by step, in the order of its equations.

    >>> b = CellBuilder("rnn", "Vanilla RNN", "…")
    >>> x, a_prev = b.input("x"), b.state("a")
    >>> z = b.affine("z_a", "W_a", [a_prev, x], "b_a")
    >>> a = b.node("a", sympy.tanh(z))
    >>> cell = b.build(output="a")
    """

    def __init__(self, name: str, title: str, summary: str) -> None:
        self.name, self.title, self.summary = name, title, summary
        self.vectors: dict[str, Vector] = {}
        self.params: dict[str, Param] = {}
        self.nodes: list[Node] = []
        self.states: list[State] = []
        self.inputs: list[str] = []

    def _add_vector(self, vector: Vector) -> sympy.Symbol:
        if vector.name in self.vectors:
            raise ValueError(f"vector {vector.name!r} defined twice in cell {self.name!r}")
        self.vectors[vector.name] = vector
        return vector.symbol

    def input(self, name: str = "x", latex: str = "x") -> sympy.Symbol:
        """The input x(t), of size n_x."""
        self.inputs.append(name)
        return self._add_vector(Vector(name, latex, "n_x", "input", 0, block=latex, text=latex))

    def state(self, name: str, latex: str | None = None) -> sympy.Symbol:
        """A recurrent state; returns its value at t−1. A later node named
        ``name`` must compute its value at t."""
        latex = latex or name
        prev = f"{name}_prev"
        self.states.append(State(name, prev))
        return self._add_vector(Vector(prev, latex, "n_h", "state_prev", -1, block=latex, text=latex))

    def affine(
        self, target: str, weight: str, parts: list[sympy.Symbol], bias: str | None = None
    ) -> sympy.Symbol:
        """``target = weight [parts…] + bias``, a pre-activation of size n_h."""
        names = tuple(p.name for p in parts)
        cols = tuple(self.vectors[p].size for p in names)
        self.params[weight] = Param(weight, _latex_name(weight), "n_h", cols)
        if bias:
            self.params[bias] = Param(bias, _latex_name(bias), "n_h", ())
        self.nodes.append(Affine(target, weight, names, bias))
        return self._add_vector(Vector(target, _latex_name(target), "n_h", "node", text=target))

    def node(
        self, target: str, expr: sympy.Expr, *, latex: str | None = None, show: bool = True, block: str = ""
    ) -> sympy.Symbol:
        """``target = expr``, elementwise. ``show=False`` hides it in the
        displayed equations (it is substituted into its consumers)."""
        unknown = {s.name for s in expr.free_symbols} - set(self.vectors)
        if unknown:
            raise ValueError(f"node {target!r} uses undefined vectors {sorted(unknown)}")
        self.nodes.append(Elementwise(target, expr, show))
        latex = latex or _latex_name(target)
        return self._add_vector(Vector(target, latex, "n_h", "node", block=block, text=latex.replace("{", "").replace("}", "")))

    def build(self, output: str) -> Cell:
        """The finished cell; ``output`` is the vector y(t) it emits."""
        targets = {n.target for n in self.nodes}
        for s in self.states:
            if s.name not in targets:
                raise ValueError(f"state {s.name!r} of cell {self.name!r} is never computed")
        if output not in targets:
            raise ValueError(f"output {output!r} of cell {self.name!r} is never computed")
        return Cell(
            self.name,
            self.title,
            self.summary,
            dict(self.vectors),
            dict(self.params),
            tuple(self.nodes),
            tuple(self.states),
            output,
            tuple(self.inputs),
        )
