"""The vanilla RNN with ReLU: a(t) = relu(W_a [a(t−1), x(t)] + b_a).

The cell of :mod:`derive.cells.rnn` with tanh replaced by relu(z) = max(z, 0),
what ``torch.nn.RNN(nonlinearity='relu')`` computes (its two biases summed
into b_a). The output is not bounded: a(t) can grow from step to step, and
the gradient passes through only where the pre-activation is positive.
"""

from ..cell import Cell, CellBuilder
from ..functions import relu

ORDER = 15  # after the tanh RNN it varies


def build() -> Cell:
    b = CellBuilder("rnn_relu", "Vanilla RNN (ReLU)", "The vanilla RNN with relu instead of tanh, as torch.nn.RNN(nonlinearity='relu').")
    x = b.input("x")
    a_prev = b.state("a")
    z_a = b.affine("z_a", "W_a", [a_prev, x], "b_a")
    b.node("a", relu(z_a))
    return b.build(output="a")
