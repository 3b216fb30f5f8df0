"""A light GRU (after Ravanelli et al. 2018): no reset gate, and a ReLU
candidate instead of tanh. Written in the thread's notation, where the
update gate Gu weights the candidate h(t) (Ravanelli's z weights the old
state: Gu = 1 − z).

Run it: derive show docs/examples/light_gru.py
        derive prove docs/examples/light_gru.py
"""

from derive import CellBuilder
from derive.functions import relu, sigmoid


def build():
    b = CellBuilder("light_gru", "Light GRU", "No reset gate; the candidate goes through ReLU.")
    x = b.input("x")
    c_prev = b.state("c")
    Gu = b.node("Gu", sigmoid(b.affine("z_u", "W_u", [c_prev, x], "b_u")), latex="G_u")
    h = b.node("h", relu(b.affine("z_h", "W_h", [c_prev, x], "b_h")))
    b.node("c", Gu * h + (1 - Gu) * c_prev)
    return b.build(output="c")
