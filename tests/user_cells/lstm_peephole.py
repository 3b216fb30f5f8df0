"""LSTM with diagonal peepholes (Gers & Schmidhuber 2000): the input and
forget gates see c(t−1), the output gate sees c(t), each through a
per-element weight vector."""

import sympy

from derive import CellBuilder
from derive.functions import sigmoid


def build():
    b = CellBuilder("lstm_peephole", "Peephole LSTM", "Gates that also read the memory cell, element by element.")
    x, a_prev, c_prev = b.input("x"), b.state("a"), b.state("c")
    p_i, p_f, p_o = b.param("p_i"), b.param("p_f"), b.param("p_o")
    G_i = b.node("G_i", sigmoid(b.affine("z_i", "W_i", [a_prev, x], "b_i") + p_i * c_prev))
    G_f = b.node("G_f", sigmoid(b.affine("z_f", "W_f", [a_prev, x], "b_f") + p_f * c_prev))
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [a_prev, x], "b_h")))
    c = b.node("c", G_f * c_prev + G_i * h)
    G_o = b.node("G_o", sigmoid(b.affine("z_o", "W_o", [a_prev, x], "b_o") + p_o * c))
    b.node("a", G_o * sympy.tanh(c))
    return b.build(output="a")
