"""The LSTM the thread promises (post 25), as ``torch.nn.LSTM`` computes it.

Two states: the memory cell c(t) and the output a(t). Three gates, all
percentages: Gi lets in a share of the candidate h(t), Gf keeps a share of
c(t−1) (the forget gate), Go lets out a share of tanh(c(t)).
"""

import sympy

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 50  # its place in the thread's order


def build() -> Cell:
    b = CellBuilder("lstm", "LSTM", "Input, forget and output gates around a memory cell c(t); the output is a(t).")
    x = b.input("x")
    a_prev = b.state("a")
    c_prev = b.state("c")
    Gi = b.node("Gi", sigmoid(b.affine("z_i", "W_i", [a_prev, x], "b_i")), latex="G_i")
    Gf = b.node("Gf", sigmoid(b.affine("z_f", "W_f", [a_prev, x], "b_f")), latex="G_f")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [a_prev, x], "b_h")))
    Go = b.node("Go", sigmoid(b.affine("z_o", "W_o", [a_prev, x], "b_o")), latex="G_o")
    c = b.node("c", Gf * c_prev + Gi * h)
    # tanh(c) gets a node of its own so that its derivative uses the cached value
    tanh_c = b.node("tanh_c", sympy.tanh(c), show=False)
    b.node("a", Go * tanh_c)
    return b.build(output="a")
