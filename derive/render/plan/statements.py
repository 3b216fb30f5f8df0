"""The statements of a kernel plan and the plan itself.

Forward, a step is state GEMMs (adding a previous state's parts into
adjacent Z blocks), activations over block runs (in place), node GEMMs (a
node's value times a column block) and element-wise assignments, in the
order the kernel computes them. Backward, a step is per-element parameter
gradients, adjoint assignments (their W_pᵀ δz atoms replaced by the named
results of GEMMs) and folded adjoints; after the loop come δx, the weight
and bias gradients as GEMMs over all steps at once.

Every field is a name, an integer, an enum or a SymPy expression over named
symbols; the equation texts are for the comments above the code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import sympy

from ...cell import Cell
from .layout import Block, Cached, ColumnBlock, ColumnSlice, NodeWeight, StateWeights


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
    """An adjoint (``target``, e.g. d_Gu) computed within a later equation
    (``into``, as text): only its equation is shown."""

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
    carry: str | None  # with Destination.CARRY: the carried gradient it writes (d_c_next)
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
class Carried:
    """``name`` (d_c_next): the gradient on ``state`` from the next step, read
    at the top of a step and overwritten by the statement that carries it to
    the previous one; ``dstate[state]`` at the last step, the gradient of the
    initial state after the loop. ``text``: δc(t)[via t+1]."""

    state: str
    name: str
    text: str


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
    carried: tuple[Carried, ...]
    backward: tuple[BackwardStatement, ...]
    input_grad: InputGrad | None
    part_steps: tuple[PartSteps, ...]
    weight_grads: tuple[WeightGrad, ...]
    bias_grads: tuple[BiasGrad, ...]
    per_element: tuple[str, ...]  # the per-element parameters: (n_h,) vectors the statements read
    param_grads: tuple[str, ...]  # their gradients, summed in the loop
    gradients: tuple[str, ...]  # the keys backward returns, in order

    @property
    def halved(self) -> bool:
        """Whether any block holds z/2 (a σ computed as ½(1 + tanh))."""
        return any(b.halved for b in self.blocks)

    def block(self, node: str) -> Block:
        """The Z block of affine node ``node`` (z_h)."""
        for b in self.blocks:
            if b.node == node:
                return b
        raise KeyError(f"node: expected one of {[b.node for b in self.blocks]}, got {node!r}")
