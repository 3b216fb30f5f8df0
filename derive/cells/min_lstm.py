"""minLSTM (Feng et al. 2024, "Were RNNs all we needed?"): the forget and
input gates and the candidate read x(t) only, the candidate is linear, and
the two gates are normalised to sum to one, Gf' = Gf / (Gf + Gi) and
Gi' = Gi / (Gf + Gi). c(t) = Gf' ⊙ c(t−1) + Gi' ⊙ h(t) is linear in
c(t−1), and the cell emits c(t) itself (no output gate): a linear scan.
"""

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

ORDER = 90  # after the thread's cells


def build() -> Cell:
    b = CellBuilder("min_lstm", "minLSTM (Feng et al.)", "Forget and input gates read x(t) only and are normalised to sum to one; no output gate.")
    x = b.input("x")
    c_prev = b.state("c")
    Gf = b.node("Gf", sigmoid(b.affine("z_f", "W_f", [x], "b_f")), latex="G_f")
    Gi = b.node("Gi", sigmoid(b.affine("z_i", "W_i", [x], "b_i")), latex="G_i")
    h = b.affine("h", "W_h", [x], "b_h")  # linear: no tanh
    Gf_n = b.node("Gf_n", Gf / (Gf + Gi), latex="G_f'")
    Gi_n = b.node("Gi_n", Gi / (Gf + Gi), latex="G_i'")
    b.node("c", Gf_n * c_prev + Gi_n * h)
    return b.build(output="c")
