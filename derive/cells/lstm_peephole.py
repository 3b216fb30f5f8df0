"""The LSTM with diagonal peepholes (Gers & Schmidhuber 2000): the input and
forget gates also read c(t−1), the output gate reads c(t), each through a
per-element weight vector (p_i, p_f, p_o). With the three peepholes at zero
it is the ``lstm`` cell, parameter for parameter.
"""

import sympy

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 70  # after the thread's cells


def build() -> Cell:
    b = CellBuilder("lstm_peephole", "Peephole LSTM (Gers & Schmidhuber)", "An LSTM whose gates also read the memory cell, element by element.")
    x = b.input("x")
    a_prev = b.state("a")
    c_prev = b.state("c")
    p_i, p_f, p_o = b.param("p_i"), b.param("p_f"), b.param("p_o")
    Gi = b.node("Gi", sigmoid(b.affine("z_i", "W_i", [a_prev, x], "b_i") + p_i * c_prev), latex="G_i")
    Gf = b.node("Gf", sigmoid(b.affine("z_f", "W_f", [a_prev, x], "b_f") + p_f * c_prev), latex="G_f")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [a_prev, x], "b_h")))
    c = b.node("c", Gf * c_prev + Gi * h)
    Go = b.node("Go", sigmoid(b.affine("z_o", "W_o", [a_prev, x], "b_o") + p_o * c), latex="G_o")
    # tanh(c) gets a node of its own so that its derivative uses the cached value
    tanh_c = b.node("tanh_c", sympy.tanh(c), show=False)
    b.node("a", Go * tanh_c)
    return b.build(output="a")
