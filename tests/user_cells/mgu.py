"""The minimal gated unit (Zhou et al. 2016): one forget gate G_f does the
work of the GRU's two gates, resetting c(t−1) before the candidate and
mixing it with the candidate after."""

from derive import CellBuilder
from derive.functions import sigmoid
import sympy


def build():
    b = CellBuilder("mgu", "Minimal gated unit", "One forget gate G_f both resets c(t−1) and mixes it with h(t).")
    x, c_prev = b.input("x"), b.state("c")
    G_f = b.node("G_f", sigmoid(b.affine("z_f", "W_f", [c_prev, x], "b_f")))
    f_c = b.node("f_c", G_f * c_prev, show=False, block="c")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [f_c, x], "b_h")))
    b.node("c", (1 - G_f) * c_prev + G_f * h)
    return b.build(output="c")
