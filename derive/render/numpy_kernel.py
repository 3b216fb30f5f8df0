"""Generate a cell's NumPy kernel (``derive/kernels/<cell>.py``) from its
forward equations and derived backward equations.

The generated module reads like code a person wrote: variables named after
the equations, each block preceded by the equation it computes. It is fast
by construction:

* the input parts of every affine node are projected for all time steps in
  one GEMM before the loop (the x-columns of the weights stacked);
* the affine nodes acting on a previous state share one GEMM per step (the
  state columns stacked), forward and backward;
* δz of every affine node is stored for all steps, so δx and each weight
  gradient are one GEMM over the stacked steps after the loop;
* gates come from the cache; σ is the runtime's stable ½(1 + tanh(z/2)).

Arrays are batch-major: a vector of the equations is a ``(B, n)`` array,
so ``W v`` is ``v @ W.T`` and ``Wᵀ δz`` is ``δz @ W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy.printing.numpy import NumPyPrinter

from ..cell import Cell
from ..derivation import OUTPUT_GRAD, carried_in
from ..functions import sigmoid
from ..graph import Affine, Elementwise, WeightT, adjoint
from .naming import block_latex
from .text import CellTextPrinter

COMMAND = "derive build"


def _py(latex_name: str) -> str:
    """``W_{hc}`` → ``W_hc``."""
    return latex_name.replace("{", "").replace("}", "")


class KernelPrinter(NumPyPrinter):
    """NumPy expressions over the kernel's local variables (``np.tanh``,
    the runtime's ``sigmoid``); a symbol prints as the name it is bound to."""

    def __init__(self, names: dict[str, str]) -> None:
        super().__init__({"fully_qualified_modules": False, "allow_unknown_functions": False})
        self.names = names

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names.get(expr.name, expr.name)

    def _print_sigmoid(self, expr: sigmoid) -> str:
        return f"sigmoid({self._print(expr.args[0])})"

    def _print_tanh(self, expr: sympy.tanh) -> str:
        return f"np.tanh({self._print(expr.args[0])})"

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == 2:  # h*h: one multiply, dtype kept
            b = self._print(base)
            return f"{b}*{b}" if isinstance(base, sympy.Symbol) else f"({b})*({b})"
        return super()._print_Pow(expr, rational)


@dataclass(frozen=True)
class Layout:
    """Where each affine node's δz lives in the stacked ``dZ`` array, and
    which affine nodes share the per-step state GEMM and the input GEMM."""

    order: tuple[Affine, ...]
    x_nodes: tuple[Affine, ...]
    state_nodes: dict[str, tuple[Affine, ...]]  # previous state -> affine nodes acting on it

    def cols(self, node: Affine) -> tuple[int, int]:
        i = self.order.index(node)
        return i, i + 1


def _layout(cell: Cell) -> Layout:
    prevs = {s.prev for s in cell.states}
    affines = [n for n in cell.nodes if isinstance(n, Affine)]

    def key(n: Affine) -> int:  # input-only first, then input+state, then state-only: both groups contiguous
        has_x = any(p in cell.inputs for p in n.parts)
        has_s = any(p in prevs for p in n.parts)
        return 0 if has_x and not has_s else 1 if has_x else 2

    order = tuple(sorted(affines, key=key))  # sorted is stable: equation order within a group
    x_nodes = tuple(n for n in order if any(p in cell.inputs for p in n.parts))
    state_nodes = {p: tuple(n for n in order if p in n.parts) for p in sorted(prevs)}
    return Layout(order, x_nodes, {p: ns for p, ns in state_nodes.items() if ns})


def _runs(layout: Layout, nodes: tuple[Affine, ...]) -> list[tuple[Affine, ...]]:
    """Split ``nodes`` into runs that are contiguous in the δz layout: one GEMM each."""
    runs: list[list[Affine]] = []
    for n in nodes:
        if runs and layout.order.index(runs[-1][-1]) + 1 == layout.order.index(n):
            runs[-1].append(n)
        else:
            runs.append([n])
    return [tuple(r) for r in runs]


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "", indent: int = 0) -> None:
        self.lines.append(("    " * indent + line) if line else "")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


def _span(layout: Layout, run: tuple[Affine, ...]) -> str:
    a, b = layout.order.index(run[0]), layout.order.index(run[-1]) + 1
    return f"{a} * n_h : {b} * n_h" if a else (f": {b} * n_h" if b > 1 else ": n_h")


def generate(cell: Cell) -> str:
    """The source of ``derive/kernels/<cell>.py``."""
    layout = _layout(cell)
    text = CellTextPrinter(cell)
    bw = cell.backward
    prevs = {s.prev: s.name for s in cell.states}
    state_of = {s.name: s for s in cell.states}
    affines = {n.target: n for n in cell.nodes if isinstance(n, Affine)}
    elementwise = [n for n in cell.nodes if isinstance(n, Elementwise)]

    def block(weight: str, part: str) -> str:
        return _py(block_latex(cell, weight, part))

    # which forward values the backward step reads: they are cached
    used: set[str] = set()
    for a in bw.adjoints:
        used |= {s.name for s in a.expr.free_symbols}
    for g in bw.weight_grads:
        used |= set(g.parts)
    cached = [n.target for n in elementwise if n.target in used or n.target in state_of]
    cached += [t for t in affines if t in used]
    seq = {name: f"{name}_seq" for name in cached}

    src = _Source()
    src(f"# Generated by `{COMMAND}` from the equations of derive/cells/{cell.name}.py: do not edit.")
    src(f"# Change the cell and run `{COMMAND}`; `derive check` fails while this file is stale.")
    src('"""' + f"{cell.title}: forward and backward (BPTT) kernels derived from its equations.")
    src()
    src("Forward step:")
    for eq in cell.forward_equations():
        src(f"    {text.doprint(eq.lhs)} = {text.doprint(eq.rhs)}")
    src()
    src("Shapes are time-major like PyTorch: xs (T, B, n_x), ys (T, B, n_h); a")
    src("vector of the equations is a (B, n) array, so W v is v @ W.T.")
    src('"""')
    src()
    src("from __future__ import annotations")
    src()
    src("from typing import Any")
    src()
    src("import numpy as np")
    src()
    src("from derive.runtime import check_params, check_sequence, check_states, init_uniform, sigmoid")
    src()
    src(f"CELL = {cell.name!r}")
    src(f"STATES = {tuple(s.name for s in cell.states)!r}")
    src(f"OUTPUT = {cell.output!r}")
    shapes = {}
    for name, p in cell.params.items():
        shapes[name] = (p.rows,) if p.is_bias else (p.rows, "+".join(p.cols))
    src(f"PARAM_SHAPES: dict[str, tuple[str, ...]] = {shapes!r}")
    src()
    src()
    _emit_init(src)
    _emit_forward(src, cell, layout, text, seq, block, prevs, state_of)
    _emit_backward(src, cell, layout, text, seq, block, prevs, state_of, affines)
    return src.text()


def _emit_init(src: _Source) -> None:
    src("def init_params(n_x: int, n_h: int, *, seed: int = 0, dtype: Any = np.float64) -> dict[str, np.ndarray]:")
    src('"""Parameters drawn uniformly in (−1/√n_h, 1/√n_h), as PyTorch does."""', 1)
    src("for name, value in (('n_x', n_x), ('n_h', n_h)):", 1)
    src("if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:", 2)
    src('raise ValueError(f"{name}: expected a positive integer, got {value!r}")', 3)
    src("dtype = np.dtype(dtype)", 1)
    src("if dtype not in (np.float32, np.float64):", 1)
    src('raise ValueError(f"dtype: expected float32 or float64, got {dtype}")', 2)
    src("rng = np.random.default_rng(seed)", 1)
    src("sizes = {'n_x': int(n_x), 'n_h': int(n_h), 'n_h+n_x': int(n_h) + int(n_x)}", 1)
    src("bound = 1.0 / np.sqrt(n_h)", 1)
    src("return {name: init_uniform(rng, tuple(sizes[s] for s in shape), bound, dtype) for name, shape in PARAM_SHAPES.items()}", 1)
    src()
    src()


def _unpack_params(src: _Source, cell: Cell, block, indent: int) -> None:  # noqa: ANN001
    names = list(cell.params)
    src(f"{', '.join(names)} = (params[k] for k in {tuple(names)!r})", indent)
    src("# column blocks: a weight on a concatenation is [W_c, W_x] on [c(t-1), x(t)]", indent)
    for n in cell.nodes:
        if isinstance(n, Affine) and len(n.parts) > 1:
            start = "0"
            cols = []
            for p in n.parts:
                size = cell.vectors[p].size
                end = size if start == "0" else f"{start} + {size}"
                cols.append(f"{n.weight}[:, {'' if start == '0' else start}:{'' if p == n.parts[-1] else end}]")
                start = end
            src(f"{', '.join(block(n.weight, p) for p in n.parts)} = {', '.join(cols)}", indent)


def _emit_forward(src, cell, layout, text, seq, block, prevs, state_of) -> None:  # noqa: ANN001
    x_nodes = layout.x_nodes
    src("def forward(")
    src("params: dict[str, np.ndarray], xs: np.ndarray, state0: dict[str, np.ndarray] | None = None", 1)
    src(") -> tuple[np.ndarray, dict[str, Any]]:")
    src(f'"""Run the cell over ``xs`` (T, B, n_x) from ``state0`` ({", ".join(f"{s!r}: (B, n_h)" for s in state_of)}; zeros if None).', 1)
    src("", 1)
    src(f"Returns ``ys`` (T, B, n_h), the output {cell.output}(t) of every step (read-only), and the", 1)
    src("cache ``backward`` needs; ``cache['final']`` holds the final states.", 1)
    src('"""', 1)
    src("sizes, dtype = check_params(params, PARAM_SHAPES)", 1)
    src("n_x, n_h = sizes['n_x'], sizes['n_h']", 1)
    src("xs = check_sequence('xs', xs, (None, None, n_x), dtype, dims=('T', 'B', 'n_x'), why=sizes.why('n_x'))", 1)
    src("T, B, _ = xs.shape", 1)
    src("state0 = check_states('state0', state0, STATES, (B, n_h), dtype)", 1)
    _unpack_params(src, cell, block, 1)
    src()
    # input projections, one GEMM
    x_weights = ", ".join(block(n.weight, "x") for n in x_nodes)
    x_biases = [n.bias for n in x_nodes]
    src("# the input parts of every step at once, biases included: one GEMM", 1)
    src(f"W_x = np.concatenate([{x_weights}]).T", 1)
    src(f"b_x = np.concatenate([{', '.join(x_biases)}])", 1)
    src(f"xW = (xs.reshape(T * B, n_x) @ W_x + b_x).reshape(T, B, {len(x_nodes)} * n_h)", 1)
    for s, nodes in layout.state_nodes.items():
        src(f"# the blocks acting on {text.doprint(sympy.Symbol(s))}, stacked: one GEMM per step", 1)
        src(f"W_{s} = np.concatenate([{', '.join(block(n.weight, s) for n in nodes)}]).T", 1)
    src()
    src("# the cache: every value the backward step reads, at every step", 1)
    for name, array in seq.items():
        steps = "T + 1" if name in state_of else "T"
        src(f"{array} = np.empty(({steps}, B, n_h), dtype)", 1)
    for s in cell.states:
        src(f"{seq[s.name]}[0] = state0[{s.name!r}]", 1)
    src("for t in range(T):", 1)
    for s in cell.states:
        src(f"{s.prev} = {seq[s.name]}[t]", 2)
    for s, nodes in layout.state_nodes.items():
        src(f"{s}W = {s} @ W_{s}", 2)
    for node in cell.nodes:
        src(f"# {text.doprint(sympy.Symbol(node.target))} = {text.doprint(node.expr() if isinstance(node, Affine) else node.expr)}", 2)
        if isinstance(node, Affine):
            terms = []
            for p in node.parts:
                if p in cell.inputs:
                    i = x_nodes.index(node)
                    terms.append(f"xW[t, :, {_col(i)}]")
                elif p in prevs:
                    i = layout.state_nodes[p].index(node)
                    terms.append(f"{p}W[:, {_col(i)}]")
                else:
                    terms.append(f"{p} @ {block(node.weight, p)}.T")
            if node.bias and not any(p in cell.inputs for p in node.parts):
                terms.append(node.bias)
            value = " + ".join(terms)
        else:
            value = KernelPrinter({}).doprint(node.expr)
        store = f"{seq[node.target]}[t + 1] = " if node.target in state_of else f"{seq[node.target]}[t] = " if node.target in seq else ""
        src(f"{store}{node.target} = {value}", 2)
    src()
    out = seq[cell.output]
    src(f"ys = {out}[1:]" if cell.output in state_of else f"ys = {out}", 1)
    src("ys.flags.writeable = False  # a view of the cache: writing into it would corrupt backward", 1)
    finals = ", ".join(f"{s!r}: {seq[s]}[T].copy()" for s in state_of)
    entries = ", ".join(f"{n!r}: {a}" for n, a in seq.items())
    src(f"cache = {{'params': params, 'xs': xs, 'final': {{{finals}}}, {entries}}}", 1)
    src("return ys, cache", 1)
    src()
    src()


def _col(i: int) -> str:
    return f"{i} * n_h : {i + 1} * n_h" if i else ": n_h"


def _emit_backward(src, cell, layout, text, seq, block, prevs, state_of, affines) -> None:  # noqa: ANN001
    bw = cell.backward
    order = layout.order
    src("def backward(")
    src("cache: dict[str, Any], dys: np.ndarray, dstate: dict[str, np.ndarray] | None = None", 1)
    src(") -> dict[str, np.ndarray]:")
    src('"""Gradients of L = Σ_t ⟨dys(t), ys(t)⟩ + Σ_s ⟨dstate[s], s(T)⟩.', 1)
    src("", 1)
    initial = ", ".join(f"``{s}0``" for s in state_of)
    src(f"Returns the gradient of every parameter (same keys), of ``xs`` and of each initial state ({initial}).", 1)
    src('"""', 1)
    src("if not isinstance(cache, dict) or 'final' not in cache or 'params' not in cache:", 1)
    src("raise ValueError(\"cache: expected the cache returned by forward(), got \" + type(cache).__name__)", 2)
    src("params, xs = cache['params'], cache['xs']", 1)
    src("T, B, n_x = xs.shape", 1)
    src("dtype = xs.dtype", 1)
    src(f"n_h = cache[{next(iter(seq))!r}].shape[2]", 1)
    src("dys = check_sequence('dys', dys, (T, B, n_h), dtype, why=' like ys')", 1)
    src("dstate = check_states('dstate', dstate, STATES, (B, n_h), dtype)", 1)
    _unpack_params(src, cell, block, 1)
    for name, array in seq.items():
        src(f"{array} = cache[{name!r}]", 1)
    src()
    for s, nodes in layout.state_nodes.items():
        src(f"W_{s} = np.concatenate([{', '.join(block(n.weight, s) for n in nodes)}])", 1)
    src("# δz of every affine node at every step, side by side", 1)
    src(f"dZ = np.empty((T, B, {len(order)} * n_h), dtype)", 1)
    for s in cell.states:
        src(f"# {text.doprint(carried_in(s.name))}: from dstate at the last step", 1)
        src(f"d_{s.name}_next = dstate[{s.name!r}]", 1)

    # the step: adjoint equations, WeightT atoms on states as stacked GEMMs
    slot: dict[str, list[int]] = {}  # δz name -> its columns in dZ (an alias can fill several)
    for g in bw.weight_grads:
        node = next(n for n in order if n.weight == g.weight)
        slot.setdefault(g.d_affine.name, []).append(order.index(node))
    reads = set()
    for a in bw.adjoints:
        reads |= {s.name for s in a.expr.free_symbols}
    src("for t in range(T - 1, -1, -1):", 1)
    for name in seq:
        if name in reads:
            src(f"{name} = {seq[name]}[t + 1]" if name in state_of else f"{name} = {seq[name]}[t]", 2)
    for s in cell.states:
        if s.prev in reads:
            src(f"{s.prev} = {seq[s.name]}[t]", 2)
    src(f"{OUTPUT_GRAD} = dys[t]", 2)
    printer_names: dict[str, str] = {}
    x_grad = None
    for a in bw.adjoints:
        if a.target in cell.inputs:
            x_grad = a
            continue
        expr = a.expr
        comment = f"# {text.doprint(a.symbol)} = {text.doprint(expr)}"
        src(comment, 2)
        lines = []
        atoms = sorted(expr.atoms(WeightT), key=sympy.default_sort_key)
        by_part: dict[str, list[WeightT]] = {}
        for w in atoms:
            by_part.setdefault(w.part, []).append(w)
        subs = {}
        for part, ws in by_part.items():
            if part in prevs and _is_whole_group(expr, ws, layout.state_nodes[part], order):
                # Σ_k W_kcᵀ δz_k over every affine node on this state: the stacked GEMM
                nodes = layout.state_nodes[part]
                temps = []
                for run in _runs(layout, nodes):
                    i0 = nodes.index(run[0])
                    rows = "" if len(run) == len(nodes) else f"[{i0} * n_h : {i0 + len(run)} * n_h]"
                    temps.append(f"dZ[t, :, {_span(layout, run)}] @ W_{part}{rows}")
                lines.append(f"matmul_{part} = " + " + ".join(temps))
                subs.update({w: sympy.Symbol(f"matmul_{part}") for w in ws})
                continue
            for w in ws:
                name = f"{block(w.weight, part)}T_{w.adjoint.name}"
                lines.append(f"{name} = {w.adjoint.name} @ {block(w.weight, part)}")
                subs[w] = sympy.Symbol(name)
        reduced = _substitute_matmuls(expr, subs)
        if len(lines) == 1 and isinstance(reduced, sympy.Symbol) and lines[0].startswith(reduced.name + " = "):
            lines, reduced = [], sympy.Symbol(lines[0].split(" = ", 1)[1])  # δr_c = δz_h @ W_hc, no temporary
        for line in lines:
            src(line, 2)
        value = KernelPrinter(printer_names).doprint(reduced)
        target = a.symbol.name
        if target in slot:
            stores = "".join(f"dZ[t, :, {_col(i)}] = " for i in slot[target])
            src(f"{stores}{target} = {value}", 2)
        elif a.target in prevs:
            src(f"d_{prevs[a.target]}_next = {value}", 2)
        else:
            src(f"{target} = {value}", 2)
    src()
    # δx: one GEMM over all steps
    if x_grad is not None:
        terms = sympy.Add.make_args(x_grad.expr)
        assert all(isinstance(t, WeightT) for t in terms), "δx must be a sum of W_xᵀ δz"
        src(f"# {text.doprint(x_grad.symbol)} = {text.doprint(x_grad.expr)}, for all steps at once", 1)
        src("dZ2 = dZ.reshape(T * B, -1)", 1)
        x_nodes = layout.x_nodes
        x_weights = ", ".join(block(n.weight, "x") for n in x_nodes)
        src(f"d_xs = (dZ2[:, {_span(layout, x_nodes)}] @ np.concatenate([{x_weights}])).reshape(T, B, n_x)", 1)
    # weight and bias gradients: one GEMM each over the stacked steps
    stacks: dict[tuple[str, ...], str] = {}
    grads = {}
    for g in bw.weight_grads:
        if g.parts not in stacks:
            name = "P_" + "_".join(g.parts)
            stacks[g.parts] = name
            pieces = []
            for p in g.parts:
                if p in cell.inputs:
                    pieces.append("xs")
                elif p in prevs:
                    pieces.append(f"{seq[prevs[p]]}[:-1]")
                else:
                    pieces.append(seq[p])
            joined = pieces[0] if len(pieces) == 1 else f"np.concatenate([{', '.join(pieces)}], axis=2)"
            src(f"{name} = {joined}.reshape(T * B, -1)", 1)
        i = order.index(next(n for n in order if n.weight == g.weight))
        src(f"# {text.doprint(adjoint(g.weight))} = Σ_t {text.doprint(g.d_affine)} [{', '.join(text.doprint(sympy.Symbol(p)) for p in g.parts)}]ᵀ", 1)
        src(f"d_{g.weight} = dZ2[:, {_col(i)}].T @ {stacks[g.parts]}", 1)
        grads[g.weight] = f"d_{g.weight}"
    for g in bw.bias_grads:
        i = order.index(next(n for n in order if n.bias == g.bias))
        src(f"d_{g.bias} = dZ2[:, {_col(i)}].sum(axis=0)", 1)
        grads[g.bias] = f"d_{g.bias}"
    entries = [f"{k!r}: {grads[k]}" for k in cell.params]
    entries.append("'xs': d_xs")
    entries += [f"'{s}0': d_{s}_next" for s in state_of]
    src("return {" + ", ".join(entries) + "}", 1)


def _is_whole_group(expr: sympy.Expr, ws: list[WeightT], nodes: tuple[Affine, ...], order: tuple[Affine, ...]) -> bool:
    """The stacked GEMM replaces these atoms only if they are plain terms of
    the sum, one per affine node acting on the state."""
    terms = set(sympy.Add.make_args(expr))
    weights = sorted(w.weight for w in ws)
    return all(w in terms for w in ws) and weights == sorted(n.weight for n in nodes)


def _substitute_matmuls(expr: sympy.Expr, subs: dict[WeightT, sympy.Symbol]) -> sympy.Expr:
    """Replace WeightT atoms by the names of their GEMM results; atoms that
    share one stacked GEMM are replaced once (the others by zero)."""
    seen: set[sympy.Symbol] = set()
    out: dict[WeightT, sympy.Expr] = {}
    for w in sorted(subs, key=sympy.default_sort_key):
        s = subs[w]
        out[w] = sympy.Integer(0) if s in seen and s.name.startswith("matmul_") else s
        seen.add(s)
    return expr.xreplace(out)
