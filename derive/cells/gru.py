"""The thread's full GRU (posts 19-24), as in Cho et al. 2014 (v3) and
Keras ``reset_after=False``.

A relevance (reset) gate Gr keeps only part of c(t−1) *before* the matrix
product that makes the candidate h(t); the update gate Gu then mixes h(t)
and c(t−1) as in the simplified GRU.
"""

import sympy

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 30  # its place in the thread's order


def build() -> Cell:
    b = CellBuilder("gru", "Full GRU (thread, Cho et al.)", "A reset gate Gr filters c(t−1) before the candidate's matrix product; Gu mixes as before.")
    x = b.input("x")
    c_prev = b.state("c")
    Gr = b.node("Gr", sigmoid(b.affine("z_r", "W_r", [c_prev, x], "b_r")), latex="G_r")
    Gu = b.node("Gu", sigmoid(b.affine("z_u", "W_u", [c_prev, x], "b_u")), latex="G_u")
    r_c = b.node("r_c", Gr * c_prev, show=False, block="c")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [r_c, x], "b_h")))
    b.node("c", Gu * h + (1 - Gu) * c_prev)
    return b.build(output="c")
