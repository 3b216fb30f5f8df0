"""How a symbol of a cell is named on paper: base name, time, δ, origin.

Shared by the LaTeX and plain-text printers so that both say the same
thing: ``d_c_next`` is δc(t) arriving from step t+1, ``d_c_prev`` is
δc(t−1) sent back by step t, ``W_h`` restricted to the part ``r_c`` is the
block W_hc.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cell import Cell
from ..derivation import OUTPUT_GRAD

_TIMES = {0: "t", -1: "t-1"}


@dataclass(frozen=True)
class Label:
    """A symbol as printed: δ``base``^(``time``)_``via``."""

    base: str  # LaTeX base name: G_r, c, W_{h}
    time: str | None = None  # "t", "t-1"; None for parameters
    delta: bool = False
    via: str | None = None  # for carried gradients: the step they come through


def label(cell: Cell, name: str) -> Label:
    """The label of symbol ``name`` (a vector, parameter or adjoint) of ``cell``."""
    if name in cell.vectors:
        v = cell.vectors[name]
        return Label(v.latex, _TIMES[v.time])
    if name in cell.params:
        return Label(cell.params[name].latex)
    if name == OUTPUT_GRAD:
        return Label("y", "t", delta=True)
    if name.startswith("d_"):
        inner = name[2:]
        if inner.endswith("_next") and inner[: -len("_next")] in {s.name for s in cell.states}:
            return Label(cell.vectors[inner[: -len("_next")]].latex, "t", True, "t+1")
        base = label(cell, inner)
        via = "t" if inner in cell.vectors and cell.vectors[inner].role == "state_prev" else None
        return Label(base.base, base.time, True, via)
    raise KeyError(f"cell {cell.name!r} has no symbol {name!r}")


def block_latex(cell: Cell, weight: str, part: str) -> str:
    """The LaTeX name of the columns of ``weight`` acting on ``part``:
    ``W_h`` on r_c (a c-block) is ``W_{hc}``; a one-part weight is itself."""
    blocks = cell.weight_blocks(weight)
    if len(blocks) == 1:
        return cell.params[weight].latex
    node = next(n for n in cell.nodes if getattr(n, "weight", None) == weight)
    label = blocks[node.parts.index(part)][0]
    base, _, sub = weight.partition("_")
    return f"{base}_{{{sub}{label}}}"


def is_preactivation(name: str) -> bool:
    """Pre-activations are named ``z_*``: hidden in the forward display, but
    their adjoints δz are what the weight gradients use, so they are shown."""
    return name.startswith("z_")
