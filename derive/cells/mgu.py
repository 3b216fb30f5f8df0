"""The minimal gated unit (Zhou et al. 2016): one forget gate Gf does the
work of the full GRU's two gates. It filters c(t−1) before the candidate's
matrix product (the GRU's Gr) and mixes the candidate h(t) with c(t−1)
(the GRU's Gu): the full GRU with Gr = Gu = Gf.
"""

import sympy

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 60  # after the thread's cells


def build() -> Cell:
    b = CellBuilder("mgu", "Minimal gated unit (Zhou et al.)", "One forget gate Gf both filters c(t−1) before the candidate and mixes h(t) with c(t−1).")
    x = b.input("x")
    c_prev = b.state("c")
    Gf = b.node("Gf", sigmoid(b.affine("z_f", "W_f", [c_prev, x], "b_f")), latex="G_f")
    f_c = b.node("f_c", Gf * c_prev, show=False, block="c")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [f_c, x], "b_h")))
    b.node("c", Gf * h + (1 - Gf) * c_prev)
    return b.build(output="c")
