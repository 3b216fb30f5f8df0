"""IndRNN (Li et al. 2018): independently recurrent units. Each unit sees
only its own past, through a per-element recurrent weight u instead of a
matrix: c(t) = relu(W x(t) + u ⊙ c(t−1) + b).
"""

from ..cell import Cell, CellBuilder
from ..functions import relu

ORDER = 100  # after the thread's cells


def build() -> Cell:
    b = CellBuilder("indrnn", "IndRNN (Li et al.)", "Independent recurrent units: a per-element recurrent weight u and ReLU.")
    x = b.input("x")
    c_prev = b.state("c")
    u = b.param("u")
    b.node("c", relu(b.affine("z", "W", [x], "b") + u * c_prev))
    return b.build(output="c")
