"""minGRU (Feng et al. 2024): the gate and the candidate read x(t) only,
and the candidate is linear; the recurrence is then a linear scan."""

from derive import CellBuilder
from derive.functions import sigmoid


def build():
    b = CellBuilder("min_gru", "minGRU", "Gate and candidate read only x(t); c(t) = (1 − G_z) ⊙ c(t−1) + G_z ⊙ h(t).")
    x, c_prev = b.input("x"), b.state("c")
    G_z = b.node("G_z", sigmoid(b.affine("z_z", "W_z", [x], "b_z")))
    h = b.node("h", b.affine("z_h", "W_h", [x], "b_h"))
    b.node("c", (1 - G_z) * c_prev + G_z * h)
    return b.build(output="c")
