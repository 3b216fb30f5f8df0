"""The GRU that PyTorch, cuDNN and Keras ``reset_after=True`` compute.

Two differences from the thread's GRU. The reset gate Gr multiplies the
*result* of the hidden matrix product, bias included:
h(t) = tanh(W_hx x(t) + b_hx + Gr ⊙ (W_hc c(t−1) + b_hc)), so the candidate
needs two biases that do not merge. And PyTorch's update gate z keeps the
*old* state: c(t) = (1 − Gz) ⊙ h(t) + Gz ⊙ c(t−1), that is Gz = 1 − Gu.
The reset and update gates' two biases do merge: b_r = b_ir + b_hr.
"""

import sympy

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 40  # its place in the thread's order


def build() -> Cell:
    b = CellBuilder("gru_torch", "PyTorch / cuDNN GRU", "Reset applied after the hidden matrix product, two candidate biases, update gate Gz = 1 − Gu.")
    x = b.input("x")
    c_prev = b.state("c")
    Gr = b.node("Gr", sigmoid(b.affine("z_r", "W_r", [c_prev, x], "b_r")), latex="G_r")
    Gz = b.node("Gz", sigmoid(b.affine("z_z", "W_z", [c_prev, x], "b_z")), latex="G_z")
    z_hx = b.affine("z_hx", "W_hx", [x], "b_hx")
    z_hc = b.affine("z_hc", "W_hc", [c_prev], "b_hc")
    z_h = b.node("z_h", z_hx + Gr * z_hc, show=False)
    h = b.node("h", sympy.tanh(z_h))
    b.node("c", (1 - Gz) * h + Gz * c_prev)
    return b.build(output="c")
