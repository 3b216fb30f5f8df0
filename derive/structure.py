"""What the derived state Jacobian tells about a cell.

From ∂s(t)/∂s′(t−1) for every pair of states (:func:`derive.derivation.state_jacobians`,
a sum of paths, each a product of ``diag(·)`` factors and weight blocks):

* **shape** — *full* when some path crosses a weight block (a matrix
  product mixes the units), *diagonal* when every path is element-wise
  (each unit's new state reads only its own past), *zero* when there is
  no path at all;
* **state dependence** — whether the Jacobian's entries read a state at
  t−1, directly or through a node computed from one. A *state-independent*
  Jacobian is the same whatever the state: the recurrence is affine in it.

A state s whose only Jacobian is ∂s(t)/∂s(t−1), diagonal and
state-independent, follows a **linear scan**: s(t) = a(t) ⊙ s(t−1) + b(t)
with a(t) that Jacobian's diagonal and b(t) = s(t) at s(t−1) = 0, both
functions of x(t) alone. Such a recurrence can be computed for all t at
once by a parallel (associative) scan: :mod:`derive.render.scan_kernel`.

Everything is read off the cell's equations; no cell is named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sympy

from .cell import Cell
from .derivation import Block, Diag, state_jacobians
from .graph import Affine, Elementwise

Shape = Literal["full", "diagonal", "zero"]


@dataclass(frozen=True)
class PairStructure:
    """The structure of ∂of(t)/∂wrt(t−1)."""

    of: str
    wrt: str
    shape: Shape
    state_dependent: bool


@dataclass(frozen=True)
class LinearScan:
    """s(t) = a(t) ⊙ s(t−1) + b(t), a and b functions of the input alone
    (SymPy expressions in the cell's node names)."""

    state: str
    a: sympy.Expr
    b: sympy.Expr


@dataclass(frozen=True)
class Structure:
    """A cell's Jacobian classification."""

    cell: str
    pairs: tuple[PairStructure, ...]
    scans: tuple[LinearScan, ...]

    @property
    def shape(self) -> Shape:
        """*full* if any pair is full, else *diagonal* (a pair that is zero
        is diagonal too)."""
        return "full" if any(p.shape == "full" for p in self.pairs) else "diagonal"

    @property
    def state_independent(self) -> bool:
        """No entry of any state Jacobian reads a state at t−1."""
        return not any(p.state_dependent for p in self.pairs)

    @property
    def linear_scan(self) -> bool:
        """Every state follows a linear scan."""
        return len(self.scans) == len(self.pairs_by_of())

    def pairs_by_of(self) -> dict[str, list[PairStructure]]:
        out: dict[str, list[PairStructure]] = {}
        for p in self.pairs:
            out.setdefault(p.of, []).append(p)
        return out

    @property
    def classification(self) -> str:
        """One word per property: ``full``, ``diagonal``, ``diagonal,
        state-independent, linear scan``…"""
        words = [self.shape, "state-independent" if self.state_independent else "state-dependent"]
        if self.linear_scan:
            words.append("linear scan")
        return ", ".join(words)

    def text(self) -> str:
        """The classification and one line per pair of states, for ``derive show --jacobian``."""
        lines = [f"{self.cell}: {self.classification}"]
        for p in self.pairs:
            dep = "reads the state at t-1" if p.state_dependent else "independent of the state"
            lines.append(f"  d{p.of}(t)/d{p.wrt}(t-1): {p.shape}, {dep}")
        for s in self.scans:
            lines.append(f"  linear scan: {s.state}(t) = a(t) * {s.state}(t-1) + b(t), "
                         f"a = {sympy.sstr(s.a)}, b = {sympy.sstr(s.b)}")
        return "\n".join(lines)


def dependencies(cell: Cell) -> dict[str, set[str]]:
    """Every vector's transitive dependencies within one step (vectors only)."""
    deps: dict[str, set[str]] = {v: set() for v in (*cell.inputs, *(s.prev for s in cell.states))}
    for node in cell.nodes:
        direct = set(node.parts) if isinstance(node, Affine) else {
            s.name for s in node.expr.free_symbols if s.name in cell.vectors}
        deps[node.target] = direct.union(*(deps[d] | {d} for d in direct))
    return deps


def _reads_state(expr: sympy.Expr, cell: Cell, deps: dict[str, set[str]]) -> bool:
    prevs = {s.prev for s in cell.states}
    for symbol in expr.free_symbols:
        name = getattr(symbol, "name", "")
        if name in prevs or deps.get(name, set()) & prevs:
            return True
    return False


def _paths(expr: sympy.Expr) -> list[sympy.Expr]:
    return list(sympy.Add.make_args(expr)) if expr != 0 else []


def _shape(expr: sympy.Expr) -> Shape:
    paths = _paths(expr)
    if not paths:
        return "zero"
    return "full" if any(p.atoms(Block) for p in paths) else "diagonal"


def _diagonal(expr: sympy.Expr) -> sympy.Expr:
    """The element-wise expression of a diagonal Jacobian: Σ paths, each a diag(·) or 1."""
    total = sympy.Integer(0)
    for path in _paths(expr):
        diags = path.atoms(Diag)
        factor = path
        for d in diags:
            factor = factor.xreplace({d: d.args[0]})
        total += factor
    return total


def classify(cell: Cell) -> Structure:
    """The Jacobian classification of ``cell`` (see the module's docstring)."""
    deps = dependencies(cell)
    by_pair = {(j.of, j.wrt): j.expr for j in state_jacobians(cell)}
    pairs = []
    for of in cell.states:
        for wrt in cell.states:
            expr = by_pair.get((of.name, wrt.prev), sympy.Integer(0))
            pairs.append(PairStructure(of.name, wrt.name, _shape(expr), _reads_state(expr, cell, deps)))
    scans = []
    nodes = {n.target: n for n in cell.nodes}
    for state in cell.states:
        mine = [p for p in pairs if p.of == state.name and p.shape != "zero"]
        if len(mine) != 1 or mine[0].wrt != state.name or mine[0].shape != "diagonal" or mine[0].state_dependent:
            continue
        node = nodes[state.name]
        if not isinstance(node, Elementwise):
            continue
        a = _diagonal(by_pair[(state.name, state.prev)])
        b = sympy.expand(node.expr.xreplace({sympy.Symbol(state.prev): 0}))
        if _reads_state(b, cell, deps) or sympy.expand(a * sympy.Symbol(state.prev) + b - node.expr) != 0:
            continue  # the state's own equation is not a ⊙ s(t−1) + b with a, b of the input alone
        scans.append(LinearScan(state.name, a, b))
    return Structure(cell.name, tuple(pairs), tuple(scans))
