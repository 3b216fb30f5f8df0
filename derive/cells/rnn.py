"""The vanilla RNN of the thread (posts 9-10): a(t) = tanh(W_a [a(t−1), x(t)] + b_a).

One matrix W_a acts on the concatenation [a(t−1), x(t)]; it is the two
matrices W_aa and W_ax of post 10 side by side. ``torch.nn.RNN`` (tanh)
computes the same step, with its two biases summed into b_a.
"""

import sympy

from ..cell import Cell, CellBuilder

ORDER = 10  # its place in the thread's order


def build() -> Cell:
    b = CellBuilder("rnn", "Vanilla RNN", "The output a(t) depends on a(t−1) and x(t) through one learned matrix and tanh.")
    x = b.input("x")
    a_prev = b.state("a")
    z_a = b.affine("z_a", "W_a", [a_prev, x], "b_a")
    b.node("a", sympy.tanh(z_a))
    return b.build(output="a")
