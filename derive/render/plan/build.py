"""Building a :class:`~derive.render.plan.KernelPlan` from a cell: which
forward values the backward step reads (they are cached), the block order,
the forward step's statements in order, the backward step's, and the
GEMMs after the loop. ``reuse.py`` decides which forward products the
backward equations read back.
"""

from __future__ import annotations

import sympy

from ...cell import Cell
from ...derivation import Adjoint, carried_in
from ...functions import sigmoid
from ...graph import Affine, Elementwise, WeightT, adjoint
from ..naming import block_latex
from ..reuse import candidates, convex, plan as reuse_plan
from ..text import CellTextPrinter
from .adjoints import inline, is_whole_group, needs, shared_subexpressions, substitute_matmuls
from .layout import (
    Block, Cached, ColumnBlock, NodeWeight, StateWeights, adjacent_runs, block_order, column_slices,
)
from .statements import (
    ActivationRun, AdjointGemm, AdjointStatement, Assign, BackwardStatement, BiasGrad, Carried, Destination,
    Folded, ForwardStatement, Function, Gemm, InputGrad, InputProjection, Kept, KernelPlan, Load, Mix,
    NodeGemm, ParamGrad, PartSteps, Shared, Slot, Source, StateAdjointGemm, StateGemm, WeightGrad,
)


class Builder:
    """Builds a :class:`KernelPlan`: the decisions, in the order the kernel
    is written."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.text = CellTextPrinter(cell)
        bw = cell.backward
        self.prevs = {s.prev: s.name for s in cell.states}
        self.states = {s.name for s in cell.states}
        affines = {n.target: n for n in cell.nodes if isinstance(n, Affine)}
        elementwise = [n for n in cell.nodes if isinstance(n, Elementwise)]
        # the step as the kernel computes it: forward products reused (see reuse.py)
        keep = {g.d_affine.name for g in bw.weight_grads} | {a.symbol.name for a in bw.adjoints if a.target in self.prevs}
        keep |= {s.name for g in bw.param_grads for s in g.expr.free_symbols}  # read by a per-element gradient
        self.step = reuse_plan(cell, keep)
        # which forward values backward reads (the step, δx and the weight gradients after the loop): they are cached
        used = set(self.step_reads())
        for a in bw.adjoints:
            if a.target in cell.inputs:
                used |= {s.name for s in a.expr.free_symbols}
        for g in bw.weight_grads:
            used |= set(g.parts)
        used -= {p.name for p in self.step.products}
        used -= set(cell.per_element)
        self.layout = block_order(cell, used)
        cached = [n.target for n in elementwise if n.target in used or n.target in self.states]
        cached += [t for t in affines if t in used]
        cached += [p.name for p in self.step.products]
        self.cached_names = cached
        self.index = {n.target: i for i, n in enumerate(self.layout.order)}
        outputs = {z: a.target for z, a in self.layout.activation.items()}
        view = {outputs.get(n.target, n.target): i for i, n in enumerate(self.layout.order)}
        self.cached = tuple(Cached(name, name in self.states, view.get(name)) for name in cached)

    def eq(self, lhs: sympy.Expr, rhs: sympy.Expr) -> str:
        return f"{self.text.doprint(lhs)} = {self.text.doprint(rhs)}"

    def node_eq(self, node: Affine | Elementwise) -> str:
        return self.eq(sympy.Symbol(node.target), node.expr() if isinstance(node, Affine) else node.expr)

    def block_name(self, weight: str, part: str) -> str:
        return block_latex(self.cell, weight, part).replace("{", "").replace("}", "")

    # -- layout
    def blocks(self) -> tuple[Block, ...]:
        lay = self.layout
        return tuple(
            Block(i, n.target, n.weight, n.bias, lay.activation[n.target].target if n.target in lay.activation else None,
                  n.target in lay.halved, self.block_name(n.weight, "x") if n in lay.x_nodes else None)
            for i, n in enumerate(lay.order)
        )

    def columns(self) -> tuple[ColumnBlock, ...]:
        out = []
        for n in self.cell.nodes:
            if isinstance(n, Affine) and len(n.parts) > 1:
                for p, cols in zip(n.parts, column_slices(self.cell, n.parts)):
                    out.append(ColumnBlock(n.weight, p, self.block_name(n.weight, p), cols))
        return tuple(out)

    def state_weights(self) -> tuple[StateWeights, ...]:
        lay = self.layout
        return tuple(
            StateWeights(s, tuple(n.target for n in nodes), tuple(self.index[n.target] for n in nodes),
                         tuple(self.block_name(n.weight, s) for n in nodes), tuple(n.target in lay.halved for n in nodes),
                         adjacent_runs(lay, nodes), any(n in lay.x_nodes for n in nodes),
                         self.text.doprint(sympy.Symbol(s)))
            for s, nodes in lay.state_nodes.items()
        )

    def node_weights(self) -> tuple[NodeWeight, ...]:
        """The parts of affine nodes that are node values (r_c): a GEMM at every step."""
        return tuple(
            NodeWeight(n.target, self.index[n.target], p, self.block_name(n.weight, p), n.target in self.layout.halved)
            for n in self.layout.order for p in n.parts if p not in self.cell.inputs and p not in self.prevs
        )

    # -- forward
    def forward(self, state_weights: tuple[StateWeights, ...], node_weights: tuple[NodeWeight, ...]) -> list[ForwardStatement]:
        cell, lay, index = self.cell, self.layout, self.index
        outputs = {z: a.target for z, a in lay.activation.items()}  # z -> the gate that overwrites its block
        late = {a.target: z for z, a in lay.activation.items()
                if any(p not in cell.inputs and p not in self.prevs for p in cell.node(z).parts)}
        out: list[ForwardStatement] = []
        for sw in state_weights:
            out.append(StateGemm(sw, tuple(self.node_eq(cell.node(n)) for n in sw.nodes)))
        # gates whose argument is complete at the start of the step: one call per run of neighbours
        early = sorted((index[z], a) for z, a in lay.activation.items() if a.target not in late)
        runs: list[list[tuple[int, Elementwise]]] = []
        for i, a in early:
            if runs and runs[-1][-1][0] + 1 == i and type(runs[-1][-1][1].expr) is type(a.expr):
                runs[-1].append((i, a))
            else:
                runs.append([(i, a)])
        for run in runs:
            out.append(self.activation(run[0][0], [a for _, a in run]))
        for node in cell.nodes:
            if isinstance(node, Affine):
                i = index[node.target]
                weights = tuple(w for w in node_weights if w.node == node.target)
                named = node.target not in lay.activation
                if weights or named:
                    shown = not any(p in self.prevs for p in node.parts)
                    out.append(NodeGemm(node.target, i, weights, named, self.node_eq(node) if shown else None))
            elif node.target in late:
                out.append(self.activation(index[late[node.target]], [node]))
            elif node.target not in outputs.values():  # not an early gate, done above
                out.append(self.assign(node))
        return out

    def activation(self, first: int, gates: list[Elementwise]) -> ActivationRun:
        fn = Function.SIGMOID if isinstance(gates[0].expr, sigmoid) else Function.TANH
        return ActivationRun(fn, (first, first + len(gates)), tuple(a.target for a in gates),
                             tuple(self.node_eq(a) for a in gates))

    def assign(self, node: Elementwise) -> Assign:
        kept_products = {q.name: q for q in self.step.products if q.node == node.target}
        expr, kept = node.expr, []
        for q in kept_products.values():
            if q.kind == "term":  # a term of the sum, computed into the cache, then added
                kept.append(Kept(q.name, q.expr))
                expr = expr.xreplace({q.expr: sympy.Symbol(q.name)})
        cached = node.target in self.cached_names
        dest = Slot(node.target, 1 if node.target in self.states else 0) if cached else None
        mix = convex(node.expr) if cached else None
        form = None
        if mix:
            g, v, u = mix
            t = self.text.doprint
            name = f"mix_{node.target}"
            form = Mix(g, v, u, name if name in kept_products else None, f"{t(u)} + {t(g)} ⊙ ({t(v)} - {t(u)})")
        return Assign(node.target, expr, dest, tuple(kept), form, self.node_eq(node))

    # -- backward
    def backward(self, state_weights: tuple[StateWeights, ...]) -> tuple[list[BackwardStatement], Adjoint | None]:
        cell, bw, step, text = self.cell, self.cell.backward, self.step, self.text
        by_state = {sw.state: sw for sw in state_weights}
        slot: dict[str, list[int]] = {}  # δz name -> its blocks in dZ (an alias can fill several)
        for g in bw.weight_grads:
            node = next(n for n in self.layout.order if n.weight == g.weight)
            slot.setdefault(g.d_affine.name, []).append(self.index[node.target])
        computed = [Adjoint(a.target, e) for a in bw.adjoints if (e := step.code.get(a.target)) is not None]
        reused = candidates(cell)
        shared, reduced_of = shared_subexpressions(computed)
        emitted: set[sympy.Symbol] = set()
        x_grad = None
        pending = list(bw.param_grads)
        out: list[BackwardStatement] = []
        for a in bw.adjoints:
            if pending and (a.target in self.prevs or a.target in cell.inputs):  # before δs(t−1) overwrites δs(t)[via t+1]
                out += [ParamGrad(g.param, g.expr, f"{text.doprint(adjoint(g.param))} += Σ_batch {text.doprint(g.expr)}")
                        for g in pending]
                pending = []
            if a.target in cell.inputs:
                x_grad = a
                continue
            equation = self.eq(a.symbol, a.expr)
            if a.target in step.folded_into:  # read by one equation only, which computes it in place
                out.append(Folded(a.symbol.name, equation, text.doprint(adjoint(step.folded_into[a.target]))))
                continue
            expr = reduced_of[a.target]
            notes = tuple((q.name, text.doprint(q.expr)) for q in reused
                          if sympy.Symbol(q.name) in step.code[a.target].free_symbols and not a.expr.has(sympy.Symbol(q.name)))
            values = []
            for name, value in shared:  # a value two equations need, computed once, before its first use
                if name not in emitted and name in needs(expr, shared):
                    values.append(Shared(name, value, text.doprint(inline(value, shared))))
                    emitted.add(name)
            gemms, reduced = self.gemms(expr, by_state)
            if len(gemms) == 1 and reduced == sympy.Symbol(gemms[0].output):
                reduced = None  # δr_c = δz_h W_hc: the GEMM is the value, no temporary
            target = a.symbol.name
            if target in slot:
                where, slots, carry = Destination.DZ, tuple(slot[target]), None
            elif a.target in self.prevs:
                where, slots, carry = Destination.CARRY, (), carried_in(self.prevs[a.target]).name
            else:
                where, slots, carry = Destination.LOCAL, (), None
            out.append(AdjointStatement(target, reduced, gemms, tuple(values), where, slots, carry, equation, notes))
        return out, x_grad

    def gemms(self, expr: sympy.Expr, by_state: dict[str, StateWeights]) -> tuple[tuple[Gemm, ...], sympy.Expr]:
        """The GEMMs of ``expr``'s W_pᵀ δz atoms and ``expr`` reading their outputs."""
        atoms = sorted(expr.atoms(WeightT), key=sympy.default_sort_key)
        by_part: dict[str, list[WeightT]] = {}
        for w in atoms:
            by_part.setdefault(w.part, []).append(w)
        gemms: list[Gemm] = []
        subs = {}
        for part, ws in by_part.items():
            if part in self.prevs and is_whole_group(expr, ws, self.layout.state_nodes[part]):
                # Σ_k W_kcᵀ δz_k over every affine node on this state: the stacked GEMM
                gemms.append(StateAdjointGemm(f"matmul_{part}", by_state[part]))
                subs.update({w: sympy.Symbol(f"matmul_{part}") for w in ws})
                continue
            for w in ws:
                weight = self.block_name(w.weight, part)
                name = f"{weight}T_{w.adjoint.name}"
                gemms.append(AdjointGemm(name, w.adjoint.name, weight))
                subs[w] = sympy.Symbol(name)
        return tuple(gemms), substitute_matmuls(expr, subs)

    def step_reads(self) -> set[str]:
        """The names the backward step's equations read (its adjoints, the per-element gradients)."""
        reads: set[str] = set()
        for e in self.step.code.values():
            if e is not None:
                reads |= {s.name for s in e.free_symbols}
        for g in self.cell.backward.param_grads:
            reads |= {s.name for s in g.expr.free_symbols}
        return reads

    def loads(self) -> tuple[Load, ...]:
        """The cached values the backward step reads, bound at the top of each step."""
        reads = self.step_reads()
        out = [Load(c.name, c.name, 1 if c.state else 0) for c in self.cached if c.name in reads]
        out += [Load(s.prev, s.name, 0) for s in self.cell.states if s.prev in reads]
        return tuple(out)

    def part_steps(self) -> tuple[PartSteps, ...]:
        out: dict[str, PartSteps] = {}
        for g in self.cell.backward.weight_grads:
            for part in g.parts:
                if part in out:
                    continue
                if part in self.cell.inputs:
                    out[part] = PartSteps(part, Source.INPUT, None)
                elif part in self.prevs:
                    out[part] = PartSteps(part, Source.PREVIOUS, self.prevs[part])
                elif part in self.states:  # a state at t: its cache holds s(0)…s(T)
                    out[part] = PartSteps(part, Source.STATE, part)
                else:
                    out[part] = PartSteps(part, Source.CACHED, part)
        return tuple(out.values())

    def build(self) -> KernelPlan:
        cell, bw, text, lay = self.cell, self.cell.backward, self.text, self.layout
        state_weights = self.state_weights()
        node_weights = self.node_weights()
        blocks = self.blocks()
        statements, x_grad = self.backward(state_weights)
        input_grad = None
        if x_grad is not None:
            terms = sympy.Add.make_args(x_grad.expr)
            assert all(isinstance(t, WeightT) for t in terms), "δx must be a sum of W_xᵀ δz"
            input_grad = InputGrad(tuple((self.index[n.target], self.block_name(n.weight, "x")) for n in lay.x_nodes),
                                   self.eq(x_grad.symbol, x_grad.expr))
        weight_grads = []
        for g in bw.weight_grads:
            i = self.index[next(n for n in lay.order if n.weight == g.weight).target]
            parts = ", ".join(text.doprint(sympy.Symbol(p)) for p in g.parts)
            equation = f"{text.doprint(adjoint(g.weight))} = Σ_t {text.doprint(g.d_affine)} [{parts}]ᵀ"
            weight_grads.append(WeightGrad(g.weight, i, tuple(g.parts), column_slices(cell, tuple(g.parts)), equation))
        bias_grads = tuple(BiasGrad(g.bias, self.index[next(n for n in lay.order if n.bias == g.bias).target])
                           for g in bw.bias_grads)
        kx = len(lay.x_nodes)
        return KernelPlan(
            cell=cell,
            equations=tuple(f"{text.doprint(eq.lhs)} = {text.doprint(eq.rhs)}" for eq in cell.forward_equations()),
            columns=self.columns(),
            blocks=blocks,
            block_names=tuple(text.doprint(sympy.Symbol(n.target)) for n in lay.order),
            adjoint_names=tuple(text.doprint(adjoint(n.target)) for n in lay.order),
            cached=self.cached,
            state_weights=state_weights,
            node_weights=node_weights,
            input_projection=InputProjection(blocks[:kx], blocks[kx:]),
            forward=tuple(self.forward(state_weights, node_weights)),
            backward_loads=self.loads(),
            carried=tuple(Carried(s.name, carried_in(s.name).name, text.doprint(carried_in(s.name))) for s in cell.states),
            backward=tuple(statements),
            input_grad=input_grad,
            part_steps=self.part_steps(),
            weight_grads=tuple(weight_grads),
            bias_grads=bias_grads,
            per_element=tuple(cell.per_element),
            param_grads=tuple(g.param for g in bw.param_grads),
            gradients=(*cell.params, "xs", *(f"{s.name}0" for s in cell.states)),
        )
