"""The kernel plan: what a cell's generated kernel computes, in which
order and in which arrays, decided once and printed by every backend.

A cell's equations say what a step computes; a kernel also has to decide
how: where each pre-activation lives (the ``Z`` blocks, in an order that
makes neighbours one array), which σ blocks hold z/2, which forward values
and products the backward step reads back (see ``reuse.py``), which matrix
products share one GEMM, and the order of the step's statements. Those
decisions do not depend on the language the kernel is printed in, so they
are made here, once per cell (:func:`plan_kernel`), into a small tree of
frozen dataclasses; a printer (``numpy_kernel.py`` for NumPy) only spells
them.

The plan holds names, integers, SymPy expressions over named symbols, and
the text of the equation each statement computes (the printers put it
above the code): never a backend's spelling. Every element-wise statement
says what it reads (its expression's symbols, per-step ``(B, n)`` arrays)
and where it writes (a cache slot at t or t + 1, a block of ``dZ`` at t,
the gradient carried to the previous step, or a local), so that a printer
may also fuse them into explicit loops between the GEMMs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import sympy

from ..cell import Cell
from ..derivation import Adjoint, carried_in
from ..functions import sigmoid
from ..graph import Affine, Elementwise, WeightT, adjoint
from .naming import block_latex
from .reuse import candidates, convex, plan as reuse_plan
from .text import CellTextPrinter


class Function(enum.Enum):
    """An activation a block run goes through in place."""

    SIGMOID = "sigmoid"  # on a halved block: ½(1 + tanh(block))
    TANH = "tanh"


class Source(enum.Enum):
    """What a stacked part vector of a weight gradient is, at every step."""

    INPUT = "input"  # x(t): the input sequence
    PREVIOUS = "previous"  # s(t−1): the state's cache without its last step
    STATE = "state"  # s(t): the state's cache without its first step
    CACHED = "cached"  # any other cached value


class Destination(enum.Enum):
    """Where a backward adjoint statement writes its value."""

    DZ = "dZ"  # the blocks ``slots`` of dZ at t (a δz the weight gradients read)
    CARRY = "carry"  # the gradient of a state carried to the previous step
    LOCAL = "local"  # a per-step local


# ---------------------------------------------------------------- layout


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


# ---------------------------------------------------------------- forward step


@dataclass(frozen=True)
class Slot:
    """The cache of ``name`` at step t + ``offset``."""

    name: str
    offset: int


@dataclass(frozen=True)
class StateGemm:
    """Z(t)[blocks] += state · (stacked column blocks)ᵀ: accumulates."""

    weights: StateWeights
    equations: tuple[str, ...]


@dataclass(frozen=True)
class ActivationRun:
    """``function`` over the adjacent blocks ``blocks[0]:blocks[1]`` of Z(t),
    in place; ``targets`` are the gates they then hold, in order."""

    function: Function
    blocks: tuple[int, int]
    targets: tuple[str, ...]
    equations: tuple[str, ...]


@dataclass(frozen=True)
class NodeGemm:
    """Z(t)[block] += node value · W_blockᵀ for each of ``weights`` (the
    parts of an affine node computed during the step); ``named``: the block
    is then read under the node's name. ``equation`` is None when a state
    GEMM already showed it."""

    node: str
    block: int
    weights: tuple[NodeWeight, ...]
    named: bool
    equation: str | None


@dataclass(frozen=True)
class Kept:
    """A product of the node's expression computed into its cache slot (at
    t) before the node: backward reads it."""

    name: str
    expr: sympy.Expr


@dataclass(frozen=True)
class Mix:
    """The node is g ⊙ v + (1 − g) ⊙ u, computed as u + g ⊙ (v − u):
    v − u into the destination, times g (into the cache of ``kept`` when
    backward reads that product), plus u. ``text``: that form, as text."""

    g: sympy.Symbol
    v: sympy.Symbol
    u: sympy.Symbol
    kept: str | None
    text: str


@dataclass(frozen=True)
class Assign:
    """``target = expr``, element-wise over (B, n) arrays; ``destination``:
    the cache slot it is written into, None for a local; ``kept`` terms
    first; ``mix`` the convex-mix form (then ``expr`` is not printed)."""

    target: str
    expr: sympy.Expr
    destination: Slot | None
    kept: tuple[Kept, ...]
    mix: Mix | None
    equation: str

    @property
    def reads(self) -> frozenset[str]:
        """The named arrays the statement reads."""
        names = {s.name for s in self.expr.free_symbols}
        for k in self.kept:
            names |= {s.name for s in k.expr.free_symbols}
        return frozenset(names - {k.name for k in self.kept})


ForwardStatement = StateGemm | ActivationRun | NodeGemm | Assign


@dataclass(frozen=True)
class InputProjection:
    """Before the loop: [x(t), 1] times [W_x; b] for every step, one GEMM per
    block into the first blocks of Z; the other blocks start at their bias."""

    blocks: tuple[Block, ...]  # the blocks fed by x(t), a prefix of Z
    others: tuple[Block, ...]  # the blocks without x(t)


# ---------------------------------------------------------------- backward step


@dataclass(frozen=True)
class ParamGrad:
    """δparam += Σ_batch expr (a per-element parameter, at every step)."""

    param: str
    expr: sympy.Expr
    equation: str


@dataclass(frozen=True)
class Folded:
    """An adjoint computed within a later equation: only its text is shown."""

    target: str
    equation: str
    into: str


@dataclass(frozen=True)
class StateAdjointGemm:
    """``output`` = Σ_k δz_k(t) · W_k,state over the affine nodes on the state."""

    output: str
    weights: StateWeights


@dataclass(frozen=True)
class AdjointGemm:
    """``output`` = adjoint · weight (W_pᵀ δz, batch-major)."""

    output: str
    adjoint: str
    weight: str


Gemm = StateAdjointGemm | AdjointGemm


@dataclass(frozen=True)
class Shared:
    """A value several equations need, computed once (``cse``)."""

    name: sympy.Symbol
    value: sympy.Expr
    text: str


@dataclass(frozen=True)
class AdjointStatement:
    """``target = expr`` after ``shared`` values and ``gemms``, whose outputs
    the expression reads by name; ``expr`` None: the value is the one GEMM's
    result, written straight into the destination."""

    target: str
    expr: sympy.Expr | None
    gemms: tuple[Gemm, ...]
    shared: tuple[Shared, ...]
    destination: Destination
    slots: tuple[int, ...]  # with Destination.DZ: the dZ blocks it fills (an alias fills several)
    state: str | None  # with Destination.CARRY: the state whose gradient it carries
    equation: str
    reused: tuple[tuple[str, str], ...]  # (product, its text): forward products the expression reads

    @property
    def reads(self) -> frozenset[str]:
        """The named arrays the element-wise part reads (GEMM outputs included)."""
        return frozenset(s.name for s in self.expr.free_symbols) if self.expr is not None else frozenset()


BackwardStatement = ParamGrad | Folded | AdjointStatement


@dataclass(frozen=True)
class Load:
    """At step t, ``name`` is the cache of ``cached`` at t + ``offset``."""

    name: str
    cached: str
    offset: int


@dataclass(frozen=True)
class InputGrad:
    """δx for all steps after the loop: Σ over the x blocks of dZ · W_x."""

    blocks: tuple[tuple[int, str], ...]  # (dZ block, column block on x)
    equation: str


@dataclass(frozen=True)
class PartSteps:
    """A part vector at every step, stacked (T·B, n) for the weight gradients."""

    part: str
    source: Source
    cached: str | None  # the cache it is a view of (None for x)


@dataclass(frozen=True)
class WeightGrad:
    """δW = dZ[block]ᵀ · [parts] over the stacked steps, one GEMM per column block."""

    weight: str
    block: int
    parts: tuple[str, ...]
    columns: tuple[ColumnSlice, ...]
    equation: str


@dataclass(frozen=True)
class BiasGrad:
    """δb = Σ_t Σ_batch dZ[block]."""

    bias: str
    block: int


@dataclass(frozen=True)
class KernelPlan:
    """Everything a printer needs to write a cell's kernel."""

    cell: Cell
    equations: tuple[str, ...]  # the forward step as text, for the module docstring
    columns: tuple[ColumnBlock, ...]  # of the weights on a concatenation, in node order
    blocks: tuple[Block, ...]  # Z and dZ, in order
    block_names: tuple[str, ...]  # z_h(t)…, for the comment on Z
    adjoint_names: tuple[str, ...]  # δz_h(t)…, for the comment on dZ
    cached: tuple[Cached, ...]  # in cache order
    state_weights: tuple[StateWeights, ...]
    node_weights: tuple[NodeWeight, ...]
    input_projection: InputProjection
    forward: tuple[ForwardStatement, ...]
    backward_loads: tuple[Load, ...]
    carried: tuple[tuple[str, str], ...]  # (state, text of δs(t)[via t+1])
    backward: tuple[BackwardStatement, ...]
    input_grad: InputGrad | None
    part_steps: tuple[PartSteps, ...]
    weight_grads: tuple[WeightGrad, ...]
    bias_grads: tuple[BiasGrad, ...]
    param_grads: tuple[str, ...]  # per-element parameters: gradient summed in the loop
    gradients: tuple[str, ...]  # the keys backward returns, in order

    @property
    def halved(self) -> bool:
        return any(b.halved for b in self.blocks)

    def block(self, node: str) -> Block:
        return next(b for b in self.blocks if b.node == node)


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class _Layout:
    order: tuple[Affine, ...]
    x_nodes: tuple[Affine, ...]
    state_nodes: dict[str, tuple[Affine, ...]]  # previous state -> affine nodes acting on it
    activation: dict[str, Elementwise]  # z -> the σ or tanh node overwriting its block
    halved: frozenset[str]

    def index(self, node: Affine) -> int:
        return self.order.index(node)


def _activation_kind(node: Elementwise | None) -> int:
    if node is None:
        return 2
    return 0 if isinstance(node.expr, sigmoid) else 1


def _layout(cell: Cell, used: set[str]) -> _Layout:
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
        return group, _activation_kind(activation.get(n.target))

    order = tuple(sorted(affines, key=key))  # sorted is stable: equation order within a group
    x_nodes = tuple(n for n in order if any(p in cell.inputs for p in n.parts))
    state_nodes = {p: tuple(n for n in order if p in n.parts) for p in sorted(prevs)}
    halved = frozenset(t for t, a in activation.items() if isinstance(a.expr, sigmoid))
    return _Layout(order, x_nodes, {p: ns for p, ns in state_nodes.items() if ns}, activation, halved)


def _runs(layout: _Layout, nodes: tuple[Affine, ...]) -> tuple[Run, ...]:
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


def _columns(cell: Cell, parts: tuple[str, ...]) -> tuple[ColumnSlice, ...]:
    """The columns of each part in a weight on [parts…], as sums of sizes."""
    slices, start = [], ()
    for p in parts:
        end = (*start, cell.vectors[p].size)
        slices.append(ColumnSlice(start, None if p == parts[-1] else end))
        start = end
    return tuple(slices)


class _Builder:
    """Builds a :class:`KernelPlan`: the decisions, in the order the kernel
    is written."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.text = CellTextPrinter(cell)
        bw = cell.backward
        self.prevs = {s.prev: s.name for s in cell.states}
        self.states = {s.name for s in cell.states}
        affines = {n.target: n for n in cell.nodes if isinstance(n, Affine)}
        elementwise = [n for n in cell.nodes if isinstance(n, Elementwise)]
        # the step as the kernel computes it: forward products reused (see reuse.py)
        keep = {g.d_affine.name for g in bw.weight_grads} | {a.symbol.name for a in bw.adjoints if a.target in self.prevs}
        keep |= {s.name for g in bw.param_grads for s in g.expr.free_symbols}  # read by a per-element gradient
        self.step = reuse_plan(cell, keep)
        # which forward values the backward step reads: they are cached
        used: set[str] = set()
        for e in self.step.code.values():
            if e is not None:
                used |= {s.name for s in e.free_symbols}
        for a in bw.adjoints:
            if a.target in cell.inputs:
                used |= {s.name for s in a.expr.free_symbols}
        for g in bw.weight_grads:
            used |= set(g.parts)
        for g in bw.param_grads:
            used |= {s.name for s in g.expr.free_symbols}
        used -= {p.name for p in self.step.products}
        used -= set(cell.per_element)
        self.layout = _layout(cell, used)
        cached = [n.target for n in elementwise if n.target in used or n.target in self.states]
        cached += [t for t in affines if t in used]
        cached += [p.name for p in self.step.products]
        self.cached_names = cached
        self.index = {n.target: i for i, n in enumerate(self.layout.order)}
        outputs = {z: a.target for z, a in self.layout.activation.items()}
        view = {outputs.get(n.target, n.target): i for i, n in enumerate(self.layout.order)}
        self.cached = tuple(Cached(name, name in self.states, view.get(name)) for name in cached)

    def eq(self, lhs: sympy.Expr, rhs: sympy.Expr) -> str:
        return f"{self.text.doprint(lhs)} = {self.text.doprint(rhs)}"

    def node_eq(self, node: Affine | Elementwise) -> str:
        return self.eq(sympy.Symbol(node.target), node.expr() if isinstance(node, Affine) else node.expr)

    def block_name(self, weight: str, part: str) -> str:
        return block_latex(self.cell, weight, part).replace("{", "").replace("}", "")

    # -- layout
    def blocks(self) -> tuple[Block, ...]:
        lay = self.layout
        return tuple(
            Block(i, n.target, n.weight, n.bias, lay.activation[n.target].target if n.target in lay.activation else None,
                  n.target in lay.halved, self.block_name(n.weight, "x") if n in lay.x_nodes else None)
            for i, n in enumerate(lay.order)
        )

    def columns(self) -> tuple[ColumnBlock, ...]:
        out = []
        for n in self.cell.nodes:
            if isinstance(n, Affine) and len(n.parts) > 1:
                for p, cols in zip(n.parts, _columns(self.cell, n.parts)):
                    out.append(ColumnBlock(n.weight, p, self.block_name(n.weight, p), cols))
        return tuple(out)

    def state_weights(self) -> tuple[StateWeights, ...]:
        lay = self.layout
        return tuple(
            StateWeights(s, tuple(n.target for n in nodes), tuple(self.index[n.target] for n in nodes),
                         tuple(self.block_name(n.weight, s) for n in nodes), tuple(n.target in lay.halved for n in nodes),
                         _runs(lay, nodes), any(n in lay.x_nodes for n in nodes))
            for s, nodes in lay.state_nodes.items()
        )

    def node_weights(self) -> tuple[NodeWeight, ...]:
        """The parts of affine nodes that are node values (r_c): a GEMM at every step."""
        return tuple(
            NodeWeight(n.target, self.index[n.target], p, self.block_name(n.weight, p), n.target in self.layout.halved)
            for n in self.layout.order for p in n.parts if p not in self.cell.inputs and p not in self.prevs
        )

    # -- forward
    def forward(self, state_weights: tuple[StateWeights, ...], node_weights: tuple[NodeWeight, ...]) -> list[ForwardStatement]:
        cell, lay, index = self.cell, self.layout, self.index
        outputs = {z: a.target for z, a in lay.activation.items()}  # z -> the gate that overwrites its block
        late = {a.target: z for z, a in lay.activation.items()
                if any(p not in cell.inputs and p not in self.prevs for p in cell.node(z).parts)}
        out: list[ForwardStatement] = []
        for sw in state_weights:
            out.append(StateGemm(sw, tuple(self.node_eq(cell.node(n)) for n in sw.nodes)))
        # gates whose argument is complete at the start of the step: one call per run of neighbours
        early = sorted((index[z], a) for z, a in lay.activation.items() if a.target not in late)
        runs: list[list[tuple[int, Elementwise]]] = []
        for i, a in early:
            if runs and runs[-1][-1][0] + 1 == i and type(runs[-1][-1][1].expr) is type(a.expr):
                runs[-1].append((i, a))
            else:
                runs.append([(i, a)])
        for run in runs:
            out.append(self.activation(run[0][0], [a for _, a in run]))
        for node in cell.nodes:
            if isinstance(node, Affine):
                i = index[node.target]
                weights = tuple(w for w in node_weights if w.node == node.target)
                named = node.target not in lay.activation
                if weights or named:
                    shown = not any(p in self.prevs for p in node.parts)
                    out.append(NodeGemm(node.target, i, weights, named, self.node_eq(node) if shown else None))
            elif node.target in late:
                out.append(self.activation(index[late[node.target]], [node]))
            elif node.target not in outputs.values():  # not an early gate, done above
                out.append(self.assign(node))
        return out

    def activation(self, first: int, gates: list[Elementwise]) -> ActivationRun:
        fn = Function.SIGMOID if isinstance(gates[0].expr, sigmoid) else Function.TANH
        return ActivationRun(fn, (first, first + len(gates)), tuple(a.target for a in gates),
                             tuple(self.node_eq(a) for a in gates))

    def assign(self, node: Elementwise) -> Assign:
        kept_products = {q.name: q for q in self.step.products if q.node == node.target}
        expr, kept = node.expr, []
        for q in kept_products.values():
            if q.kind == "term":  # a term of the sum, computed into the cache, then added
                kept.append(Kept(q.name, q.expr))
                expr = expr.xreplace({q.expr: sympy.Symbol(q.name)})
        cached = node.target in self.cached_names
        dest = Slot(node.target, 1 if node.target in self.states else 0) if cached else None
        mix = convex(node.expr) if cached else None
        form = None
        if mix:
            g, v, u = mix
            t = self.text.doprint
            name = f"mix_{node.target}"
            form = Mix(g, v, u, name if name in kept_products else None, f"{t(u)} + {t(g)} ⊙ ({t(v)} - {t(u)})")
        return Assign(node.target, expr, dest, tuple(kept), form, self.node_eq(node))

    # -- backward
    def backward(self, state_weights: tuple[StateWeights, ...]) -> tuple[list[BackwardStatement], Adjoint | None]:
        cell, bw, step, text = self.cell, self.cell.backward, self.step, self.text
        by_state = {sw.state: sw for sw in state_weights}
        slot: dict[str, list[int]] = {}  # δz name -> its blocks in dZ (an alias can fill several)
        for g in bw.weight_grads:
            node = next(n for n in self.layout.order if n.weight == g.weight)
            slot.setdefault(g.d_affine.name, []).append(self.index[node.target])
        computed = [Adjoint(a.target, e) for a in bw.adjoints if (e := step.code.get(a.target)) is not None]
        reused = candidates(cell)
        shared, reduced_of = _shared_subexpressions(computed)
        emitted: set[sympy.Symbol] = set()
        x_grad = None
        pending = list(bw.param_grads)
        out: list[BackwardStatement] = []
        for a in bw.adjoints:
            if pending and (a.target in self.prevs or a.target in cell.inputs):  # before δs(t−1) overwrites δs(t)[via t+1]
                out += [ParamGrad(g.param, g.expr, f"{text.doprint(adjoint(g.param))} += Σ_batch {text.doprint(g.expr)}")
                        for g in pending]
                pending = []
            if a.target in cell.inputs:
                x_grad = a
                continue
            equation = self.eq(a.symbol, a.expr)
            if a.target in step.folded_into:  # read by one equation only, which computes it in place
                out.append(Folded(a.target, equation, text.doprint(adjoint(step.folded_into[a.target]))))
                continue
            expr = reduced_of[a.target]
            notes = tuple((q.name, text.doprint(q.expr)) for q in reused
                          if sympy.Symbol(q.name) in step.code[a.target].free_symbols and not a.expr.has(sympy.Symbol(q.name)))
            values = []
            for name, value in shared:  # a value two equations need, computed once, before its first use
                if name not in emitted and name in _needs(expr, shared):
                    values.append(Shared(name, value, text.doprint(_inline(value, shared))))
                    emitted.add(name)
            gemms, reduced = self.gemms(expr, by_state)
            if len(gemms) == 1 and reduced == sympy.Symbol(gemms[0].output):
                reduced = None  # δr_c = δz_h W_hc: the GEMM is the value, no temporary
            target = a.symbol.name
            if target in slot:
                where, slots, state = Destination.DZ, tuple(slot[target]), None
            elif a.target in self.prevs:
                where, slots, state = Destination.CARRY, (), self.prevs[a.target]
            else:
                where, slots, state = Destination.LOCAL, (), None
            out.append(AdjointStatement(target, reduced, gemms, tuple(values), where, slots, state, equation, notes))
        return out, x_grad

    def gemms(self, expr: sympy.Expr, by_state: dict[str, StateWeights]) -> tuple[tuple[Gemm, ...], sympy.Expr]:
        """The GEMMs of ``expr``'s W_pᵀ δz atoms and ``expr`` reading their outputs."""
        atoms = sorted(expr.atoms(WeightT), key=sympy.default_sort_key)
        by_part: dict[str, list[WeightT]] = {}
        for w in atoms:
            by_part.setdefault(w.part, []).append(w)
        gemms: list[Gemm] = []
        subs = {}
        for part, ws in by_part.items():
            if part in self.prevs and _is_whole_group(expr, ws, self.layout.state_nodes[part]):
                # Σ_k W_kcᵀ δz_k over every affine node on this state: the stacked GEMM
                gemms.append(StateAdjointGemm(f"matmul_{part}", by_state[part]))
                subs.update({w: sympy.Symbol(f"matmul_{part}") for w in ws})
                continue
            for w in ws:
                weight = self.block_name(w.weight, part)
                name = f"{weight}T_{w.adjoint.name}"
                gemms.append(AdjointGemm(name, w.adjoint.name, weight))
                subs[w] = sympy.Symbol(name)
        return tuple(gemms), _substitute_matmuls(expr, subs)

    def loads(self, statements: list[BackwardStatement]) -> tuple[Load, ...]:
        reads: set[str] = set()
        for e in self.step.code.values():
            if e is not None:
                reads |= {s.name for s in e.free_symbols}
        for g in self.cell.backward.param_grads:
            reads |= {s.name for s in g.expr.free_symbols}
        out = [Load(c.name, c.name, 1 if c.state else 0) for c in self.cached if c.name in reads]
        out += [Load(s.prev, s.name, 0) for s in self.cell.states if s.prev in reads]
        return tuple(out)

    def part_steps(self) -> tuple[PartSteps, ...]:
        out: dict[str, PartSteps] = {}
        for g in self.cell.backward.weight_grads:
            for part in g.parts:
                if part in out:
                    continue
                if part in self.cell.inputs:
                    out[part] = PartSteps(part, Source.INPUT, None)
                elif part in self.prevs:
                    out[part] = PartSteps(part, Source.PREVIOUS, self.prevs[part])
                elif part in self.states:  # a state at t: its cache holds s(0)…s(T)
                    out[part] = PartSteps(part, Source.STATE, part)
                else:
                    out[part] = PartSteps(part, Source.CACHED, part)
        return tuple(out.values())

    def build(self) -> KernelPlan:
        cell, bw, text, lay = self.cell, self.cell.backward, self.text, self.layout
        state_weights = self.state_weights()
        node_weights = self.node_weights()
        blocks = self.blocks()
        statements, x_grad = self.backward(state_weights)
        input_grad = None
        if x_grad is not None:
            terms = sympy.Add.make_args(x_grad.expr)
            assert all(isinstance(t, WeightT) for t in terms), "δx must be a sum of W_xᵀ δz"
            input_grad = InputGrad(tuple((self.index[n.target], self.block_name(n.weight, "x")) for n in lay.x_nodes),
                                   self.eq(x_grad.symbol, x_grad.expr))
        weight_grads = []
        for g in bw.weight_grads:
            i = self.index[next(n for n in lay.order if n.weight == g.weight).target]
            parts = ", ".join(text.doprint(sympy.Symbol(p)) for p in g.parts)
            equation = f"{text.doprint(adjoint(g.weight))} = Σ_t {text.doprint(g.d_affine)} [{parts}]ᵀ"
            weight_grads.append(WeightGrad(g.weight, i, tuple(g.parts), _columns(cell, tuple(g.parts)), equation))
        bias_grads = tuple(BiasGrad(g.bias, self.index[next(n for n in lay.order if n.bias == g.bias).target])
                           for g in bw.bias_grads)
        kx = len(lay.x_nodes)
        return KernelPlan(
            cell=cell,
            equations=tuple(f"{text.doprint(eq.lhs)} = {text.doprint(eq.rhs)}" for eq in cell.forward_equations()),
            columns=self.columns(),
            blocks=blocks,
            block_names=tuple(text.doprint(sympy.Symbol(n.target)) for n in lay.order),
            adjoint_names=tuple(text.doprint(adjoint(n.target)) for n in lay.order),
            cached=self.cached,
            state_weights=state_weights,
            node_weights=node_weights,
            input_projection=InputProjection(blocks[:kx], blocks[kx:]),
            forward=tuple(self.forward(state_weights, node_weights)),
            backward_loads=self.loads(statements),
            carried=tuple((s.name, text.doprint(carried_in(s.name))) for s in cell.states),
            backward=tuple(statements),
            input_grad=input_grad,
            part_steps=self.part_steps(),
            weight_grads=tuple(weight_grads),
            bias_grads=bias_grads,
            param_grads=tuple(g.param for g in bw.param_grads),
            gradients=(*cell.params, "xs", *(f"{s.name}0" for s in cell.states)),
        )


def plan_kernel(cell: Cell) -> KernelPlan:
    """The kernel plan of ``cell``, built once per cell: kept in the cell's
    ``__dict__`` as its ``cached_property`` values are (a frozen cell holds
    dicts, so it cannot be a cache key)."""
    if not isinstance(cell, Cell):
        raise TypeError(f"cell: expected a derive Cell, got {type(cell).__name__}")
    cache = vars(cell)
    if "_kernel_plan" not in cache:
        cache["_kernel_plan"] = _Builder(cell).build()
    return cache["_kernel_plan"]


# ---------------------------------------------------------------- backward helpers


def _shared_subexpressions(adjoints: list[Adjoint]) -> tuple[list[tuple[sympy.Symbol, sympy.Expr]], dict[str, sympy.Expr]]:
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


def _inline(expr: sympy.Expr, shared: list[tuple[sympy.Symbol, sympy.Expr]]) -> sympy.Expr:
    """``expr`` with every shared name replaced by its value, nested ones included."""
    values = dict(shared)
    for _ in range(len(values) + 1):
        new = expr.xreplace(values)
        if new == expr:
            break
        expr = new
    return expr


def _needs(expr: sympy.Expr, shared: list[tuple[sympy.Symbol, sympy.Expr]]) -> set[sympy.Symbol]:
    """The shared names ``expr`` uses, directly or through other shared names."""
    values = dict(shared)
    need, todo = set(), [s for s in expr.free_symbols if s in values]
    while todo:
        s = todo.pop()
        if s not in need:
            need.add(s)
            todo += [u for u in values[s].free_symbols if u in values]
    return need


def _is_whole_group(expr: sympy.Expr, ws: list[WeightT], nodes: tuple[Affine, ...]) -> bool:
    """The stacked GEMM replaces these atoms only if they are plain terms of
    the sum, one per affine node acting on the state."""
    terms = set(sympy.Add.make_args(expr))
    weights = sorted(w.weight for w in ws)
    return all(w in terms for w in ws) and weights == sorted(n.weight for n in nodes)


def _substitute_matmuls(expr: sympy.Expr, subs: dict[WeightT, sympy.Symbol]) -> sympy.Expr:
    """Replace WeightT atoms by the names of their GEMM results; atoms that
    share one stacked GEMM are replaced once (the others by zero)."""
    seen: set[sympy.Symbol] = set()
    out: dict[WeightT, sympy.Expr] = {}
    for w in sorted(subs, key=sympy.default_sort_key):
        s = subs[w]
        out[w] = sympy.Integer(0) if s in seen and s.name.startswith("matmul_") else s
        seen.add(s)
    return expr.xreplace(out)
