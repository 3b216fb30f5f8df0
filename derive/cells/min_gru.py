"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"): the simplified
GRU with c(t−1) removed from the gate and from the candidate, and the
candidate's tanh removed. Gu and h(t) then read x(t) alone, and
c(t) = (1 − Gu) ⊙ c(t−1) + Gu ⊙ h(t) is linear in c(t−1): a linear scan
that can run in parallel over time.
"""

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 80  # after the thread's cells


def build() -> Cell:
    b = CellBuilder("min_gru", "minGRU (Feng et al.)", "Gate and candidate read x(t) only; c(t) mixes them linearly with c(t−1).")
    x = b.input("x")
    c_prev = b.state("c")
    Gu = b.node("Gu", sigmoid(b.affine("z_u", "W_u", [x], "b_u")), latex="G_u")
    h = b.affine("h", "W_h", [x], "b_h")  # linear: no tanh
    b.node("c", Gu * h + (1 - Gu) * c_prev)
    return b.build(output="c")
