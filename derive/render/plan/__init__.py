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
them, and another backend is one more printer.

The plan holds names, integers, enums, SymPy expressions over named
symbols, and the text of the equation each statement computes (printers
put it above the code): never a backend's spelling. Every element-wise
statement says what it reads (its expression's symbols: per-step ``(B, n)``
arrays, or the ``(n_h,)`` per-element parameters) and where it writes (a
cache slot at t or t + 1, blocks of ``dZ`` at t, the gradient carried to the
previous step, or a local), and every GEMM its output and operands, so that
a printer may also fuse the element-wise work into explicit loops between
the GEMMs.

Modules: :mod:`.layout` (the Z blocks, cached arrays, column blocks,
stacked weights), :mod:`.statements` (the forward and backward statements,
:class:`KernelPlan`), :mod:`.adjoints` (shared values and matrix products
of the backward step), :mod:`.build` (the decisions).
"""

from __future__ import annotations

from ...cell import Cell
from .build import Builder
from .layout import Block, Cached, ColumnBlock, ColumnSlice, NodeWeight, Run, StateWeights
from .statements import (
    ActivationRun, AdjointGemm, AdjointStatement, Assign, BackwardStatement, BiasGrad, Carried, Destination,
    Folded, ForwardStatement, Function, Gemm, InputGrad, InputProjection, Kept, KernelPlan, Load, Mix,
    NodeGemm, ParamGrad, PartSteps, Shared, Slot, Source, StateAdjointGemm, StateGemm, WeightGrad,
)


def plan_kernel(cell: Cell) -> KernelPlan:
    """The kernel plan of ``cell``, built once per cell: kept in the cell's
    ``__dict__`` as its ``cached_property`` values are (a frozen cell holds
    dicts, so it cannot be a cache key)."""
    if not isinstance(cell, Cell):
        raise TypeError(f"cell: expected a derive Cell, got {type(cell).__name__}")
    cache = vars(cell)
    if "_kernel_plan" not in cache:
        cache["_kernel_plan"] = Builder(cell).build()
    return cache["_kernel_plan"]


__all__ = [
    "ActivationRun", "AdjointGemm", "AdjointStatement", "Assign", "BackwardStatement", "BiasGrad", "Block", "Cached",
    "Carried", "ColumnBlock", "ColumnSlice", "Destination", "Folded", "ForwardStatement", "Function", "Gemm",
    "InputGrad", "InputProjection", "Kept", "KernelPlan", "Load", "Mix", "NodeGemm", "NodeWeight", "ParamGrad",
    "PartSteps", "Run", "Shared", "Slot", "Source", "StateAdjointGemm", "StateGemm", "StateWeights", "WeightGrad",
    "plan_kernel",
]
