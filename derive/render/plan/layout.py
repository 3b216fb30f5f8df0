"""The layout of a kernel's arrays: the order of the Z blocks (one per
affine node, the same order for dZ), which σ blocks are halved, which gate
overwrites its block in place, the column blocks of a weight on a
concatenation, and the stacked weights of the per-step GEMMs.

The order is chosen so that one GEMM fills a contiguous run of blocks: the
nodes fed by x(t) first (the input projection fills a prefix of Z before
the loop), then by x(t) and a previous state, then the others; inside each
group σ before tanh, so that adjacent σ gates are one array for one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ...cell import Cell
from ...functions import sigmoid
from ...graph import Affine, Elementwise


@dataclass(frozen=True)
class ColumnSlice:
    """Columns ``start:stop`` of a weight on a concatenation, as sums of
    size names: ``start`` () is 0, ``stop`` None is the last column."""

    start: tuple[str, ...]
    stop: tuple[str, ...] | None


@dataclass(frozen=True)
class ColumnBlock:
    """The columns of ``weight`` acting on ``part``, named ``name`` (W_hc)."""

    weight: str
    part: str
    name: str
    columns: ColumnSlice


@dataclass(frozen=True)
class Block:
    """One ``(T, B, n_h)`` block of Z (forward) and of dZ (its δz, backward).

    ``activation`` is the gate whose σ or tanh overwrites the block in place
    (the block is then that gate's cache); ``halved``: the block holds z/2,
    its σ is ½(1 + tanh(z/2)), the ½ folded into its weights and bias;
    ``x_weight``: the column block on x(t) when the input projection fills it.
    """

    index: int
    node: str
    weight: str
    bias: str | None
    activation: str | None
    halved: bool
    x_weight: str | None


@dataclass(frozen=True)
class Run:
    """Adjacent Z blocks ``blocks[0]:blocks[1]`` fed by rows
    ``rows[0]:rows[1]`` of a stacked weight (one array slice each)."""

    blocks: tuple[int, int]
    rows: tuple[int, int]


@dataclass(frozen=True)
class StateWeights:
    """The column blocks of every affine node acting on ``state`` (a previous
    state), stacked in block order: one GEMM per step, forward and backward."""

    state: str
    nodes: tuple[str, ...]
    blocks: tuple[int, ...]
    weights: tuple[str, ...]  # the column block of each node on the state
    halved: tuple[bool, ...]
    runs: tuple[Run, ...]
    with_input: bool  # one of the nodes also reads x(t)
    text: str  # the state as the equations show it: c(t-1)


@dataclass(frozen=True)
class NodeWeight:
    """A column block multiplied at every step on a node's value (W_hc on r_c)."""

    node: str
    block: int
    part: str
    weight: str
    halved: bool


@dataclass(frozen=True)
class Cached:
    """An array the forward pass fills and backward reads: ``name`` at every
    step, T steps (T + 1 for a state: s(0)…s(T)); ``block``: a view of that
    Z block (a gate computed in place), else its own array."""

    name: str
    state: bool
    block: int | None


@dataclass(frozen=True)
class BlockOrder:
    """The decisions :func:`block_order` makes, on the cell's nodes (the
    plan's :class:`Block` records are made from it)."""

    order: tuple[Affine, ...]
    x_nodes: tuple[Affine, ...]
    state_nodes: dict[str, tuple[Affine, ...]]  # previous state -> affine nodes acting on it
    activation: dict[str, Elementwise]  # z -> the σ or tanh node overwriting its block
    halved: frozenset[str]

    def index(self, node: Affine) -> int:
        return self.order.index(node)


def activation_kind(node: Elementwise | None) -> int:
    if node is None:
        return 2
    return 0 if isinstance(node.expr, sigmoid) else 1


def block_order(cell: Cell, used: set[str]) -> BlockOrder:
    """The block order: input-only nodes, then input+state, then the others
    (so that the input GEMM fills a prefix of ``Z`` and the state GEMM a
    contiguous run); inside each group σ before tanh, so that adjacent σ
    gates are one block run. A σ or tanh whose argument feeds nothing else
    and that backward never reads overwrites its block in place."""
    prevs = {s.prev for s in cell.states}
    states = {s.name for s in cell.states}
    affines = [n for n in cell.nodes if isinstance(n, Affine)]
    readers: dict[str, list[Elementwise | Affine]] = {}
    for n in cell.nodes:
        args = n.arguments() if isinstance(n, Elementwise) else list(n.parts)
        for a in args:
            readers.setdefault(a, []).append(n)
    activation = {}
    for z in affines:
        r = readers.get(z.target, [])
        if (len(r) == 1 and isinstance(r[0], Elementwise) and isinstance(r[0].expr, (sigmoid, sympy.tanh))
                and r[0].expr.args[0] == sympy.Symbol(z.target) and z.target not in used and r[0].target not in states):
            activation[z.target] = r[0]

    def key(n: Affine) -> tuple[int, int]:
        has_x = any(p in cell.inputs for p in n.parts)
        has_s = any(p in prevs for p in n.parts)
        group = 0 if has_x and not has_s else 1 if has_x else 2
        return group, activation_kind(activation.get(n.target))

    order = tuple(sorted(affines, key=key))  # sorted is stable: equation order within a group
    x_nodes = tuple(n for n in order if any(p in cell.inputs for p in n.parts))
    state_nodes = {p: tuple(n for n in order if p in n.parts) for p in sorted(prevs)}
    halved = frozenset(t for t, a in activation.items() if isinstance(a.expr, sigmoid))
    return BlockOrder(order, x_nodes, {p: ns for p, ns in state_nodes.items() if ns}, activation, halved)


def adjacent_runs(layout: BlockOrder, nodes: tuple[Affine, ...]) -> tuple[Run, ...]:
    """Split ``nodes`` into runs of adjacent blocks, with their rows in the
    stack of ``nodes``."""
    runs: list[list[Affine]] = []
    for n in nodes:
        if runs and layout.index(runs[-1][-1]) + 1 == layout.index(n):
            runs[-1].append(n)
        else:
            runs.append([n])
    out, j = [], 0
    for r in runs:
        out.append(Run((layout.index(r[0]), layout.index(r[-1]) + 1), (j, j + len(r))))
        j += len(r)
    return tuple(out)


def column_slices(cell: Cell, parts: tuple[str, ...]) -> tuple[ColumnSlice, ...]:
    """The columns of each part in a weight on [parts…], as sums of sizes."""
    slices, start = [], ()
    for p in parts:
        end = (*start, cell.vectors[p].size)
        slices.append(ColumnSlice(start, None if p == parts[-1] else end))
        start = end
    return tuple(slices)
