"""How another framework's fused recurrent layer lays out a derive cell's params.

A fused layer stacks its gates' weights in blocks, in its own gate order;
each block fills one derive gate (``W_<gate>`` on [state, x], ``b_<gate>``),
possibly negated (an update gate that keeps the old state is 1 − G_u =
σ(−(…)) of one that lets the new one in: negating the weights is exact).
The reset-after GRU's candidate is the one block whose input and state
halves stay apart (``W_hx``/``b_hx`` and ``W_hc``/``b_hc``), since the reset
gate multiplies the state half, bias included.

The Keras and ONNX modules, and the site's conversion table, read these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """One block of a fused layer's gates: its name there, the derive gate it
    fills and the sign its weights and biases take; ``gate=None`` is the
    reset-after candidate, whose halves stay apart."""

    theirs: str
    gate: str | None
    sign: int = 1

    @property
    def derive_params(self) -> str:
        """The derive params this block fills, as the conversion table shows them."""
        if self.gate is None:
            return "W_hx, b_hx (input half); W_hc, b_hc (state half)"
        return f"{'−' if self.sign < 0 else ''}W_{self.gate}, {'−' if self.sign < 0 else ''}b_{self.gate}"


@dataclass(frozen=True)
class Layout:
    """How one layer of one framework (with one setting) maps onto one derive cell."""

    framework: str
    layer: str
    setting: str
    cell: str
    blocks: tuple[Block, ...]
    update: str  # what the layer's update gate keeps, said with derive's gates
    bias: str  # how the layer's biases split

    @property
    def split_candidate(self) -> bool:
        """Whether the candidate's input and state halves stay apart (reset after the product)."""
        return any(b.gate is None for b in self.blocks)

    @property
    def order(self) -> str:
        """The layer's gate order, as its documentation writes it."""
        return ", ".join(b.theirs for b in self.blocks)
