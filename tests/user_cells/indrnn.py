"""IndRNN (Li et al. 2018): each unit keeps its own recurrent weight,
c(t) = relu(W x(t) + u ⊙ c(t−1) + b)."""

from derive import CellBuilder
from derive.functions import relu


def build():
    b = CellBuilder("indrnn", "IndRNN", "Independent recurrent units: a per-element recurrent weight u and ReLU.")
    x, c_prev = b.input("x"), b.state("c")
    u = b.param("u")
    b.node("c", relu(b.affine("z", "W", [x], "b") + u * c_prev))
    return b.build(output="c")
