"""The thread's simplified GRU (posts 11-18): an update gate Gu only.

h(t) is the plain-RNN answer computed from c(t−1) and x(t); Gu, a vector of
percentages, keeps that share of h(t) and fills the rest, 1 − Gu, with
c(t−1).
"""

import sympy

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 20  # its place in the thread's order


def build() -> Cell:
    b = CellBuilder("gru_simple", "Simplified GRU", "An update gate Gu mixes the candidate h(t) with the previous state c(t−1).")
    x = b.input("x")
    c_prev = b.state("c")
    Gu = b.node("Gu", sigmoid(b.affine("z_u", "W_u", [c_prev, x], "b_u")), latex="G_u")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [c_prev, x], "b_h")))
    b.node("c", Gu * h + (1 - Gu) * c_prev)
    return b.build(output="c")
