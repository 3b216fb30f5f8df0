"""The kernel plan on its own (``derive/render/plan/``): the decisions a
printer spells, checked without printing anything.

A few decisions are checked on the cells that show them (one state GEMM
into the four adjacent blocks of the LSTM, a node GEMM in the GRU, nothing
reused in the plain RNN); the rest are invariants every cell's plan keeps
(the package's cells and the user cells of ``tests/cells/``): each part of
an affine node is fed by exactly one GEMM, the statements read only names
that exist at that point of the step, and the plan holds no NumPy spelling.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sympy

import derive
from derive.derivation import OUTPUT_GRAD
from derive.graph import Affine
from derive.render.plan import (
    ActivationRun, AdjointGemm, AdjointStatement, Assign, Destination, Folded, KernelPlan, NodeGemm, ParamGrad, Run,
    StateAdjointGemm, StateGemm, plan_kernel,
)

HERE = Path(__file__).parent
USER_CELLS = sorted((HERE / "cells").glob("*.cell"))


def _plans() -> list:
    return [pytest.param(name, id=name) for name in derive.names()] + [
        pytest.param(path, id=path.name) for path in USER_CELLS
    ]


def _cell(which: str | Path) -> derive.Cell:
    return derive.load_cell(which) if isinstance(which, Path) else derive.cell(which)


def test_lstm_one_state_gemm_into_four_adjacent_blocks_sigma_halved() -> None:
    plan = plan_kernel(derive.cell("lstm"))
    gemms = [s for s in plan.forward if isinstance(s, StateGemm)]
    assert len(gemms) == 1, gemms
    weights = gemms[0].weights
    assert weights.state == "a_prev"
    assert sorted(weights.nodes) == ["z_f", "z_h", "z_i", "z_o"]
    assert weights.runs == (Run((0, 4), (0, 4)),)  # one array slice: the four blocks are adjacent
    assert {b.node for b in plan.blocks if b.halved} == {"z_i", "z_f", "z_o"}  # σ blocks hold z/2, tanh's does not
    assert {b.node: b.activation for b in plan.blocks} == {"z_i": "Gi", "z_f": "Gf", "z_o": "Go", "z_h": "h"}
    # the three σ are one call on adjacent blocks, before the tanh
    runs = [s for s in plan.forward if isinstance(s, ActivationRun)]
    assert [(r.function.value, r.targets) for r in runs] == [("sigmoid", ("Gi", "Gf", "Go")), ("tanh", ("h",))]
    # the gates are views of their Z blocks; the memory's two products are kept for backward
    cached = {c.name: c for c in plan.cached}
    assert set(cached) == {"Gi", "Gf", "Go", "h", "c", "tanh_c", "a", "Gf_c_prev", "Gi_h"}
    assert {n for n, c in cached.items() if c.block is not None} == {"Gi", "Gf", "Go", "h"}
    assert {n for n, c in cached.items() if c.state} == {"a", "c"}
    memory = next(s for s in plan.forward if isinstance(s, Assign) and s.target == "c")
    assert [k.name for k in memory.kept] == ["Gf_c_prev", "Gi_h"]
    assert memory.expr == sympy.Symbol("Gf_c_prev") + sympy.Symbol("Gi_h")


def test_gru_node_gemm_on_the_reset_product() -> None:
    plan = plan_kernel(derive.cell("gru"))
    node_gemms = [s for s in plan.forward if isinstance(s, NodeGemm)]
    assert len(node_gemms) == 1
    (gemm,) = node_gemms
    assert (gemm.node, [(w.part, w.weight) for w in gemm.weights]) == ("z_h", [("r_c", "W_hc")])
    assert not gemm.named  # tanh overwrites the block: z_h is never read by name
    order = [s.target if isinstance(s, Assign) else s for s in plan.forward]
    assert order.index("r_c") < order.index(gemm), "r_c must be computed before W_hc multiplies it"
    assert "r_c" in {c.name for c in plan.cached}  # the weight gradient's part at every step
    # backward: δr_c = W_hcᵀ δz_h is the GEMM itself, no temporary
    d_r_c = next(s for s in plan.backward if isinstance(s, AdjointStatement) and s.target == "d_r_c")
    assert d_r_c.expr is None
    assert d_r_c.gemms == (AdjointGemm("W_hcT_d_z_h", "d_z_h", "W_hc"),)
    # the mix c(t-1) + G_u ⊙ (h − c(t-1)), its middle pass kept for backward
    mix = next(s for s in plan.forward if isinstance(s, Assign) and s.target == "c").mix
    assert mix is not None and mix.kept == "mix_c"
    assert (mix.g, mix.v, mix.u) == sympy.symbols("Gu h c_prev")


def test_rnn_nothing_reused() -> None:
    plan = plan_kernel(derive.cell("rnn"))
    assert [c.name for c in plan.cached] == ["a"]
    assigns = [s for s in plan.forward if isinstance(s, Assign)]
    assert [(s.target, s.kept, s.mix) for s in assigns] == [("a", (), None)]
    assert not any(isinstance(s, Folded) for s in plan.backward)
    assert all(not s.reused and not s.shared for s in plan.backward if isinstance(s, AdjointStatement))
    # δa(t−1) is the one stacked GEMM on the state, carried to the previous step
    carry = [s for s in plan.backward if isinstance(s, AdjointStatement) and s.destination is Destination.CARRY]
    assert len(carry) == 1 and carry[0].carry == "d_a_next" and carry[0].expr is None
    assert isinstance(carry[0].gemms[0], StateAdjointGemm)


@pytest.mark.parametrize("which", _plans())
def test_every_part_fed_by_exactly_one_gemm(which: str | Path) -> None:
    """x(t) parts by the input projection, previous states by a state GEMM,
    node values by a node GEMM: each (node, part) once."""
    cell = _cell(which)
    plan = plan_kernel(cell)
    fed = [(b.node, x) for b in plan.input_projection.blocks for x in cell.inputs]
    for s in plan.forward:
        if isinstance(s, StateGemm):
            fed += [(n, s.weights.state) for n in s.weights.nodes]
        elif isinstance(s, NodeGemm):
            fed += [(w.node, w.part) for w in s.weights]
    expected = [(n.target, p) for n in cell.nodes if isinstance(n, Affine) for p in n.parts]
    assert sorted(fed) == sorted(expected)
    assert [b.index for b in plan.blocks] == list(range(len(plan.blocks)))
    assert plan.input_projection.blocks == plan.blocks[:len(plan.input_projection.blocks)]  # a prefix of Z


def _forward_names(plan: KernelPlan) -> list[tuple[str, frozenset[str], set[str]]]:
    """(statement, what it reads, what exists before it) for each element-wise statement of the forward step."""
    cell = plan.cell
    known = {s.prev for s in cell.states} | set(plan.per_element)
    checks = []
    for s in plan.forward:
        if isinstance(s, ActivationRun):
            known |= set(s.targets)
        elif isinstance(s, NodeGemm):
            assert all(w.part in known for w in s.weights), (s, known)
            known |= {s.node} if s.named else set()
        elif isinstance(s, Assign):
            reads = s.reads | ({m.name for m in (s.mix.g, s.mix.v, s.mix.u)} if s.mix else set())
            checks.append((s.target, frozenset(reads), set(known)))
            known |= {s.target} | {k.name for k in s.kept}
    return checks


def _backward_names(plan: KernelPlan) -> list[tuple[str, frozenset[str], set[str]]]:
    """The same for the backward step: loads, δy, the carried gradients, then each statement's results."""
    known = {load.name for load in plan.backward_loads} | {c.name for c in plan.carried} | {OUTPUT_GRAD}
    known |= set(plan.per_element)
    checks = []
    for s in plan.backward:
        if isinstance(s, ParamGrad):
            checks.append((f"d_{s.param}", frozenset(x.name for x in s.expr.free_symbols), set(known)))
        elif isinstance(s, AdjointStatement):
            for v in s.shared:
                checks.append((v.name.name, frozenset(x.name for x in v.value.free_symbols), set(known)))
                known.add(v.name.name)
            for g in s.gemms:
                if isinstance(g, AdjointGemm):
                    checks.append((g.output, frozenset({g.adjoint}), set(known)))
                known.add(g.output)
            checks.append((s.target, s.reads, set(known)))
            known.add(s.target)
            if s.carry:
                known.add(s.carry)
    return checks


@pytest.mark.parametrize("which", _plans())
def test_statements_read_only_names_that_exist(which: str | Path) -> None:
    plan = plan_kernel(_cell(which))
    forward, backward = _forward_names(plan), _backward_names(plan)
    assert forward and backward
    for target, reads, known in forward + backward:
        assert reads <= known, f"{target} reads {sorted(reads - known)} before they exist"


def _strings(value: object, path: str = "plan"):  # noqa: ANN202
    """Every string of the plan, with where it is (SymPy expressions as printed, the cell itself left out)."""
    if isinstance(value, derive.Cell):
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, (tuple, list, frozenset, set)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")
    elif isinstance(value, sympy.Basic):
        yield path, str(value)
    elif isinstance(value, str):
        yield path, value


@pytest.mark.parametrize("which", _plans())
def test_plan_holds_no_numpy_spelling(which: str | Path) -> None:
    strings = list(_strings(plan_kernel(_cell(which))))
    assert len(strings) > 20
    spelled = [(p, s) for p, s in strings for token in ("np.", "out=", "@", "numpy", ".T", "[:") if token in s]
    assert not spelled, spelled


def test_plan_built_once_per_cell_and_refuses_other_input() -> None:
    cell = derive.cell("gru")
    assert plan_kernel(cell) is plan_kernel(cell)
    with pytest.raises(TypeError, match="cell: expected a derive Cell, got str"):
        plan_kernel("gru")  # type: ignore[arg-type]
