"""Generate a cell's NumPy kernel (``derive/kernels/<cell>.py``) from its
forward equations and derived backward equations.

The generated module reads like code a person wrote: variables named after
the equations, each block preceded by the equation it computes. It is fast
by construction:

* the input parts of every affine node are projected for all time steps in
  one GEMM before the loop (the x-columns of the weights stacked), the
  biases with them as the weights of a column of ones;
* the affine nodes acting on a previous state share one GEMM per step (the
  state columns stacked), forward and backward;
* δz of every affine node is stored for all steps, so δx and each column
  block of a weight gradient are one GEMM over the stacked steps after the
  loop, and the bias gradients one product with a row of ones;
* a gate mixing two vectors, g ⊙ v + (1 − g) ⊙ u, is computed as
  u + g ⊙ (v − u): three passes written into the cache, no temporary;
* products of the forward pass that the backward equations contain
  (r_c = G_r ⊙ c(t−1), G_i ⊙ h, the mix's g ⊙ (v − u)) are cached and read
  back instead of recomputed (``reuse.py`` plans which);
* gates come from the cache; σ is the runtime's stable ½(1 + tanh(z/2)).

Arrays are batch-major: a vector of the equations is a ``(B, n)`` array,
so ``W v`` is ``v @ W.T`` and ``Wᵀ δz`` is ``δz @ W``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from ..cell import Cell
from ..derivation import OUTPUT_GRAD, Adjoint, carried_in
from .. import functions
from ..functions import sigmoid
from ..graph import Affine, Elementwise, WeightT, adjoint
from .naming import block_latex
from .reuse import StepPlan, candidates, convex, plan
from .text import CellTextPrinter

COMMAND = "derive build"
RUNTIME_IMPORT = "# <runtime import>"
# the runtime's functions a kernel may call, in the order they are imported
_RUNTIME_CALLS = ("sigmoid", "sigmoid_of_half", *sorted({f for a in functions.REGISTRY for f in a.runtime} - {"sigmoid"}))


def _py(latex_name: str) -> str:
    """``W_{hc}`` → ``W_hc``."""
    return latex_name.replace("{", "").replace("}", "")


class KernelPrinter(NumPyPrinter):
    """NumPy expressions over the kernel's local variables (``np.tanh``,
    the runtime's ``sigmoid``); a symbol prints as the name it is bound to.
    Every activation is spelled by its registry entry; ``runtime`` collects
    the runtime functions the printed code calls."""

    def __init__(self, names: dict[str, str]) -> None:
        super().__init__({"fully_qualified_modules": False, "allow_unknown_functions": False})
        self.names = names
        self.runtime: set[str] = set()

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names.get(expr.name, expr.name)

    def _print_activation(self, entry: functions.Activation, expr: sympy.Function) -> str:
        self.runtime.update(entry.runtime)
        return entry.numpy.format(self._print(expr.args[0]))

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == 2:  # h*h: one multiply, dtype kept
            b = self._print(base)
            return f"{b}*{b}" if isinstance(base, sympy.Symbol) else f"({b})*({b})"
        if exp == -1:  # a division: 1/(f + i), dtype kept
            return f"1/{self.parenthesize(base, PRECEDENCE['Pow'])}"
        return super()._print_Pow(expr, rational)


functions.install_printers(KernelPrinter, KernelPrinter._print_activation)


@dataclass(frozen=True)
class Layout:
    """Where each affine node's pre-activation lives: one ``(T, B, n_h)`` block
    of ``Z`` (forward) and of ``dZ`` (its δz, backward), in ``order``.

    Blocks are gate-major (``Z[i]`` is contiguous), so that every gate is a
    contiguous array and adjacent gates are one array for a fused add or σ.
    ``activation[z]`` is the node ``f(z)`` (σ or tanh) that overwrites the
    block of ``z`` in place: ``z`` feeds nothing else and backward never
    reads it. ``halved`` are the nodes whose block holds z/2 (their σ is
    ½(1 + tanh(z/2)), the ½ folded into their weights and bias).
    """

    order: tuple[Affine, ...]
    x_nodes: tuple[Affine, ...]
    state_nodes: dict[str, tuple[Affine, ...]]  # previous state -> affine nodes acting on it
    activation: dict[str, Elementwise]
    halved: frozenset[str]

    def index(self, node: Affine) -> int:
        return self.order.index(node)


def _activation_kind(node: Elementwise | None) -> int:
    if node is None:
        return 2
    return 0 if isinstance(node.expr, sigmoid) else 1


def _layout(cell: Cell, used: set[str]) -> Layout:
    """The block order: input-only nodes, then input+state, then the others
    (so that the input GEMM fills a prefix of ``Z`` and the state GEMM a
    contiguous run); inside each group σ before tanh, so that adjacent σ
    gates are one block run."""
    prevs = {s.prev for s in cell.states}
    states = {s.name for s in cell.states}
    affines = [n for n in cell.nodes if isinstance(n, Affine)]
    readers: dict[str, list[Elementwise | Affine]] = {}
    for n in cell.nodes:
        args = n.arguments() if isinstance(n, Elementwise) else list(n.parts)
        for a in args:
            readers.setdefault(a, []).append(n)
    activation = {}
    for z in affines:
        r = readers.get(z.target, [])
        if (len(r) == 1 and isinstance(r[0], Elementwise) and isinstance(r[0].expr, (sigmoid, sympy.tanh))
                and r[0].expr.args[0] == sympy.Symbol(z.target) and z.target not in used and r[0].target not in states):
            activation[z.target] = r[0]

    def key(n: Affine) -> tuple[int, int]:
        has_x = any(p in cell.inputs for p in n.parts)
        has_s = any(p in prevs for p in n.parts)
        group = 0 if has_x and not has_s else 1 if has_x else 2
        return group, _activation_kind(activation.get(n.target))

    order = tuple(sorted(affines, key=key))  # sorted is stable: equation order within a group
    x_nodes = tuple(n for n in order if any(p in cell.inputs for p in n.parts))
    state_nodes = {p: tuple(n for n in order if p in n.parts) for p in sorted(prevs)}
    halved = frozenset(t for t, a in activation.items() if isinstance(a.expr, sigmoid))
    return Layout(order, x_nodes, {p: ns for p, ns in state_nodes.items() if ns}, activation, halved)


def _runs(layout: Layout, nodes: tuple[Affine, ...]) -> list[tuple[Affine, ...]]:
    """Split ``nodes`` into runs of adjacent blocks: one array slice each."""
    runs: list[list[Affine]] = []
    for n in nodes:
        if runs and layout.index(runs[-1][-1]) + 1 == layout.index(n):
            runs[-1].append(n)
        else:
            runs.append([n])
    return [tuple(r) for r in runs]


def _c_stack(blocks: list[str]) -> str:
    """A stack of matrices, in C order: ``np.stack`` keeps the layout of
    transposed blocks (column order), which NumPy's batched product reads
    about twice as slowly."""
    return f"np.ascontiguousarray(np.stack([{', '.join(blocks)}]))"


def _rows(a: int, b: int, k: int, *, squeeze: bool = False) -> str:
    """The index of blocks a..b-1 of a k-block array: ``[1:3]``, nothing for
    all of them, or with ``squeeze`` ``[2]`` for a single block."""
    if squeeze and b == a + 1:
        return f"[{a}]"
    if a == 0 and b == k:
        return ""
    return f"[{a}:{b}]" if a else f"[:{b}]"


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "", indent: int = 0) -> None:
        self.lines.append(("    " * indent + line) if line else "")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"



def _into(printer: KernelPrinter, expr: sympy.Expr, out: str) -> str | None:
    """``expr`` with its last operation writing into ``out`` (no copy), or
    None when that operation is not a ufunc call."""
    if isinstance(expr, (sympy.tanh, sigmoid)):
        fn = "np.tanh" if isinstance(expr, sympy.tanh) else "sigmoid"
        return f"{fn}({printer.doprint(expr.args[0])}, out={out})"
    if isinstance(expr, sympy.Add):
        first, *rest = expr.as_ordered_terms()
        return f"np.add({printer.doprint(first)}, {printer.doprint(sympy.Add(*rest))}, out={out})"
    if isinstance(expr, sympy.Mul):
        *rest, last = expr.as_ordered_factors()
        return f"np.multiply({printer.doprint(sympy.Mul(*rest))}, {printer.doprint(last)}, out={out})"
    return None


def generate(cell: Cell, command: str | None = None) -> str:
    """The source of ``derive/kernels/<cell>.py``; ``command`` is the one
    its header names as the way to regenerate it (``derive build``)."""
    text = CellTextPrinter(cell)
    bw = cell.backward
    prevs = {s.prev: s.name for s in cell.states}
    state_of = {s.name: s for s in cell.states}
    affines = {n.target: n for n in cell.nodes if isinstance(n, Affine)}
    elementwise = [n for n in cell.nodes if isinstance(n, Elementwise)]

    def block(weight: str, part: str) -> str:
        return _py(block_latex(cell, weight, part))

    # the step as the kernel computes it: forward products reused (see reuse.py)
    keep = {g.d_affine.name for g in bw.weight_grads} | {a.symbol.name for a in bw.adjoints if a.target in prevs}
    keep |= {s.name for g in bw.param_grads for s in g.expr.free_symbols}  # read by a per-element gradient
    step = plan(cell, keep)
    # which forward values the backward step reads: they are cached
    used: set[str] = set()
    for e in step.code.values():
        if e is not None:
            used |= {s.name for s in e.free_symbols}
    for a in bw.adjoints:
        if a.target in cell.inputs:
            used |= {s.name for s in a.expr.free_symbols}
    for g in bw.weight_grads:
        used |= set(g.parts)
    for g in bw.param_grads:
        used |= {s.name for s in g.expr.free_symbols}
    used -= {p.name for p in step.products}
    used -= set(cell.per_element)
    layout = _layout(cell, used)
    cached = [n.target for n in elementwise if n.target in used or n.target in state_of]
    cached += [t for t in affines if t in used]
    cached += [p.name for p in step.products]
    seq = {name: f"{name}_seq" for name in cached}
    in_place = {a.target for a in layout.activation.values()}

    src = _Source()
    command = command or COMMAND
    src(f"# Generated by `{command}` from the equations of {cell.source}: do not edit.")
    src(f"# Change the cell and run `{command}`; `derive check` fails while this file is stale.")
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
    src(RUNTIME_IMPORT)  # filled in once the body is written: the functions it calls
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
    _emit_init(src, shapes)
    _emit_forward(src, cell, layout, text, seq, block, prevs, state_of, step)
    _emit_backward(src, cell, layout, text, seq, block, prevs, state_of, step)
    body = src.text()
    runtime = ["check_params", "check_sequence", "check_states", "init_uniform"]
    runtime += [f for f in _RUNTIME_CALLS if re.search(rf"\b{f}\(", body)]
    return body.replace(RUNTIME_IMPORT, f"from derive.runtime import {', '.join(runtime)}", 1)


def _emit_init(src: _Source, shapes: dict[str, tuple[str, ...]]) -> None:
    src("def init_params(n_x: int, n_h: int, *, seed: int = 0, dtype: Any = np.float64) -> dict[str, np.ndarray]:")
    src('"""Parameters drawn uniformly in (−1/√n_h, 1/√n_h), as PyTorch does."""', 1)
    src("for name, value in (('n_x', n_x), ('n_h', n_h)):", 1)
    src("if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:", 2)
    src('raise ValueError(f"{name}: expected a positive integer, got {value!r}")', 3)
    src("dtype = np.dtype(dtype)", 1)
    src("if dtype not in (np.float32, np.float64):", 1)
    src('raise ValueError(f"dtype: expected float32 or float64, got {dtype}")', 2)
    src("if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:", 1)
    src('raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")', 2)
    src("rng = np.random.default_rng(seed)", 1)
    # every size a parameter's shape names: n_x, n_h and the sums of a weight on a concatenation
    combos = sorted({e for shape in shapes.values() for e in shape if "+" in e}, key=lambda e: (e.count("+"), e))
    sizes = ["'n_x': int(n_x)", "'n_h': int(n_h)"] + [f"{e!r}: {' + '.join(f'int({t})' for t in e.split('+'))}" for e in combos]
    src("sizes = {" + ", ".join(sizes) + "}", 1)
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
            cols = [f"{n.weight}[:, {c}]" for c in _columns(cell, n.parts)]
            src(f"{', '.join(block(n.weight, p) for p in n.parts)} = {', '.join(cols)}", indent)


def _columns(cell: Cell, parts: tuple[str, ...]) -> list[str]:
    """The column slice of each part in a weight on [parts…]: ``:n_h``,
    ``n_h:`` (sizes are the kernel's names, e.g. ``n_h``)."""
    slices, start = [], "0"
    for p in parts:
        size = cell.vectors[p].size
        end = size if start == "0" else f"{start} + {size}"
        slices.append(f"{'' if start == '0' else start}:{'' if p == parts[-1] else end}")
        start = end
    return slices


def _emit_forward(src, cell, layout, text, seq, block, prevs, state_of, step: StepPlan) -> None:  # noqa: ANN001
    order, x_nodes = layout.order, layout.x_nodes
    k, kx = len(order), len(x_nodes)
    index = {n.target: i for i, n in enumerate(order)}
    outputs = {z: a.target for z, a in layout.activation.items()}  # z -> the gate that overwrites its block
    late = {a.target: z for z, a in layout.activation.items()
            if any(p not in cell.inputs and p not in prevs for p in cell.node(z).parts)}
    printer = KernelPrinter({})

    def eq(node) -> str:  # noqa: ANN001
        rhs = node.expr() if isinstance(node, Affine) else node.expr
        return f"# {text.doprint(sympy.Symbol(node.target))} = {text.doprint(rhs)}"

    def scaled(node: Affine, value: str) -> str:
        return f"half * {value}" if node.target in layout.halved else value

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
    src("# copies: backward reads these, and the caller may change their arrays or dict meanwhile", 1)
    src("params = {k: np.array(params[k], dtype) for k in PARAM_SHAPES}", 1)
    _unpack_params(src, cell, block, 1)
    src()
    names = ", ".join(text.doprint(sympy.Symbol(n.target)) for n in order)
    src(f"# Z: the pre-activation of every affine node, one (T, B, n_h) block each: {names}.", 1)
    if layout.activation:
        src("# A σ or tanh whose argument feeds nothing else overwrites that block in place:", 1)
        src("# Z is then the cache of its gate. Blocks are contiguous, neighbours share one add or σ.", 1)
    if layout.halved:
        src("# σ(z) = ½(1 + tanh(z/2)): the ½ is folded into the weights and bias of each σ's", 1)
        src("# block, which holds z/2 (exact: a power of two), so σ is tanh, × ½, + ½.", 1)
        src("half = dtype.type(0.5)", 1)
    src(f"Z = np.empty(({k}, T, B, n_h), dtype)", 1)
    for i, n in enumerate(order):
        name = outputs.get(n.target, n.target)
        if name in seq:
            src(f"{seq[name]} = Z[{i}]", 1)
    for name, array in seq.items():
        if name in index or name in outputs.values():
            continue
        steps = "T + 1" if name in state_of else "T"
        src(f"{array} = np.empty(({steps}, B, n_h), dtype)", 1)
    for s in cell.states:
        src(f"{seq[s.name]}[0] = state0[{s.name!r}]", 1)
    if kx:
        # the bias as the weight of a column of ones: the GEMM adds it, no pass over Z
        src("# the input parts of every step and the biases at once: [x(t), 1] times [W_x; b], one GEMM per block", 1)
        src("xs1 = np.empty((T * B, n_x + 1), dtype)", 1)
        src("xs1[:, :n_x] = xs.reshape(T * B, n_x)", 1)
        src("xs1[:, n_x] = 1", 1)
        rows = [f"np.vstack([{block(n.weight, 'x')}.T, {n.bias or 'np.zeros(n_h, dtype)'}])" for n in x_nodes]
        src(f"W_x1 = {_c_stack([scaled(n, r) for n, r in zip(x_nodes, rows)])}", 1)
        src(f"np.matmul(xs1, W_x1, out=Z{_rows(0, kx, k)}.reshape({kx}, T * B, n_h))", 1)
    if kx < k:
        biases = [scaled(n, n.bias) if n.bias else "np.zeros(n_h, dtype)" for n in order[kx:]]
        src(f"Z[{kx}:] = np.stack([{', '.join(biases)}])[:, None, None, :]  # the biases of the blocks without x(t)", 1)
    for s, nodes in layout.state_nodes.items():
        src(f"# the blocks acting on {text.doprint(sympy.Symbol(s))}, stacked: one GEMM per step", 1)
        if len(nodes) == 1:
            src(f"W_{s} = {scaled(nodes[0], block(nodes[0].weight, s) + '.T')}.copy()", 1)
            src(f"{s}W = np.empty((B, n_h), dtype)", 1)
        else:
            src(f"W_{s} = {_c_stack([scaled(n, block(n.weight, s) + '.T') for n in nodes])}", 1)
            src(f"{s}W = np.empty(({len(nodes)}, B, n_h), dtype)", 1)
    node_parts = {}  # (node, part) -> the weight expression of a per-step GEMM on a node's value
    node_buffers: set[str] = set()
    for n in order:
        for p in n.parts:
            if p not in cell.inputs and p not in prevs:
                w = block(n.weight, p)
                # a contiguous copy: BLAS multiplies by a transposed view markedly slower
                if n.target in layout.halved:
                    src(f"{w}T_half = np.ascontiguousarray(half * {w}.T)", 1)
                    node_parts[n, p] = f"{w}T_half"
                else:
                    src(f"{w}T = np.ascontiguousarray({w}.T)", 1)
                    node_parts[n, p] = f"{w}T"
                if f"{p}W" not in node_buffers:
                    src(f"{p}W = np.empty((B, n_h), dtype)", 1)
                    node_buffers.add(f"{p}W")
    src()
    src("for t in range(T):", 1)
    for s in cell.states:
        src(f"{s.prev} = {seq[s.name]}[t]", 2)
    src("Z_t = Z[:, t]", 2)
    for s, nodes in layout.state_nodes.items():
        for n in nodes:
            src(eq(n), 2)
        others = "the x(t) parts and biases are in Z_t" if any(n in x_nodes for n in nodes) else "the biases are in Z_t"
        src(f"# ({others}; add the {text.doprint(sympy.Symbol(s))} parts)", 2)
        runs = _runs(layout, nodes)
        if len(runs) == 1:
            a, b = index[runs[0][0].target], index[runs[0][-1].target] + 1
            src(f"Z_t{_rows(a, b, k, squeeze=len(nodes) == 1)} += np.matmul({s}, W_{s}, out={s}W)", 2)
        else:
            src(f"np.matmul({s}, W_{s}, out={s}W)", 2)
            j = 0
            for run in runs:
                a, b = index[run[0].target], index[run[-1].target] + 1
                src(f"Z_t{_rows(a, b, k)} += {s}W{_rows(j, j + len(run), len(nodes))}", 2)
                j += len(run)
    # gates whose argument is complete at the start of the step: one call per run of neighbours
    early = sorted((index[z], a) for z, a in layout.activation.items() if a.target not in late)
    runs: list[list[tuple[int, Elementwise]]] = []
    for i, a in early:
        if runs and runs[-1][-1][0] + 1 == i and type(runs[-1][-1][1].expr) is type(a.expr):
            runs[-1].append((i, a))
        else:
            runs.append([(i, a)])
    for run in runs:
        for _, a in run:
            src(eq(a), 2)
        fn = "sigmoid_of_half" if isinstance(run[0][1].expr, sigmoid) else "np.tanh"
        rows = f"Z_t{_rows(run[0][0], run[-1][0] + 1, k, squeeze=True)}"
        if len(run) == 1:
            src(f"{run[0][1].target} = {fn}({rows}, out={rows})", 2)
        else:
            src(f"{fn}({rows}, out={rows})", 2)
            src(f"{', '.join(a.target for _, a in run)} = {rows}", 2)
    for node in cell.nodes:
        if isinstance(node, Affine):
            i = index[node.target]
            per_step = [p for p in node.parts if (node, p) in node_parts]
            named = node.target not in layout.activation
            if not per_step and not named:
                continue
            if not any(p in prevs for p in node.parts):
                src(eq(node) + ("" if per_step else " (before the loop)"), 2)
            for p in per_step:
                src(f"Z_t[{i}] += np.matmul({p}, {node_parts[node, p]}, out={p}W)", 2)
            if named:
                src(f"{node.target} = Z_t[{i}]", 2)
        elif node.target in late:
            i = index[late[node.target]]
            fn = "sigmoid_of_half" if isinstance(node.expr, sigmoid) else "np.tanh"
            src(eq(node), 2)
            src(f"{node.target} = {fn}(Z_t[{i}], out=Z_t[{i}])", 2)
        elif node.target in outputs.values():
            continue  # an early gate, done above
        else:
            src(eq(node), 2)
            mix = convex(node.expr)
            kept = {q.name: q for q in step.products if q.node == node.target}
            expr = node.expr
            for q in kept.values():
                if q.kind == "term":  # a term of the sum, computed into the cache, then added
                    src(f"{q.name} = {_into(printer, q.expr, f'{seq[q.name]}[t]')}  # kept for backward", 2)
                    expr = expr.xreplace({q.expr: sympy.Symbol(q.name)})
            value = printer.doprint(expr)
            if node.target in seq and mix:
                g, v, u = (printer.doprint(x) for x in mix)
                out = f"{seq[node.target]}[t + 1]" if node.target in state_of else f"{seq[node.target]}[t]"
                src(f"# as {text.doprint(mix[2])} + {text.doprint(mix[0])} ⊙ ({text.doprint(mix[1])} - {text.doprint(mix[2])}): three passes, no temporary", 2)
                src(f"{node.target} = np.subtract({v}, {u}, out={out})", 2)
                name = f"mix_{node.target}"
                if name in kept:  # the middle pass goes to the cache: backward reads it
                    src(f"{name} = np.multiply({node.target}, {g}, out={seq[name]}[t])  # kept for backward", 2)
                    src(f"np.add({u}, {name}, out={node.target})", 2)
                else:
                    src(f"{node.target} *= {g}", 2)
                    src(f"{node.target} += {u}", 2)
            elif node.target in seq:
                out = f"{seq[node.target]}[t + 1]" if node.target in state_of else f"{seq[node.target]}[t]"
                into = _into(printer, expr, out)
                src(f"{node.target} = {into}" if into else f"{out} = {node.target} = {value}", 2)
            else:
                src(f"{node.target} = {value}", 2)
    src()
    out = seq[cell.output]
    src(f"ys = {out}[1:]" if cell.output in state_of else f"ys = {out}", 1)
    src("ys.flags.writeable = False  # a view of the cache: writing into it would corrupt backward", 1)
    finals = ", ".join(f"{s!r}: {seq[s]}[T].copy()" for s in state_of)
    entries = ", ".join(f"{n!r}: {a}" for n, a in seq.items())
    # xs as backward reads it: a view of the copy in xs1 (the caller may change xs)
    xs_kept = "xs1[:, :n_x].reshape(T, B, n_x)" if kx else "xs.copy()"
    src(f"cache = {{'cell': CELL, 'params': params, 'xs': {xs_kept}, 'final': {{{finals}}}, {entries}}}", 1)
    src("return ys, cache", 1)
    src()
    src()


def _emit_backward(src, cell, layout, text, seq, block, prevs, state_of, step: StepPlan) -> None:  # noqa: ANN001
    bw = cell.backward
    order, x_nodes = layout.order, layout.x_nodes
    k, kx = len(order), len(x_nodes)
    index = {n.target: i for i, n in enumerate(order)}
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
    src("if cache.get('cell') != CELL:", 1)
    src("raise ValueError(f\"cache: expected the cache of {CELL}.forward(), got one from {cache.get('cell')}.forward()\")", 2)
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
    for n in order:  # blocks multiplied at every step on a node's value (δr_c = W_hcᵀ δz_h)
        for part in n.parts:
            if part not in cell.inputs and part not in prevs:
                w = block(n.weight, part)
                src(f"{w} = np.ascontiguousarray({w})  # BLAS reads a column slice of W markedly slower", 1)
    for s, nodes in layout.state_nodes.items():
        if len(nodes) == 1:
            src(f"W_{s} = {block(nodes[0].weight, s)}.copy()", 1)
        else:
            src(f"W_{s} = np.stack([{', '.join(block(n.weight, s) for n in nodes)}])", 1)
            src(f"{s}_dZW = np.empty(({len(nodes)}, B, n_h), dtype)", 1)
    names = ", ".join(text.doprint(adjoint(n.target)) for n in order)
    src(f"# dZ: δz of every affine node at every step, one (T, B, n_h) block each: {names}", 1)
    src(f"dZ = np.empty(({k}, T, B, n_h), dtype)", 1)
    for s in cell.states:
        src(f"# {text.doprint(carried_in(s.name))}: from dstate at the last step", 1)
        src(f"d_{s.name}_next = dstate[{s.name!r}]", 1)

    # the step: adjoint equations, WeightT atoms on states as stacked GEMMs
    slot: dict[str, list[int]] = {}  # δz name -> its blocks in dZ (an alias can fill several)
    for g in bw.weight_grads:
        node = next(n for n in order if n.weight == g.weight)
        slot.setdefault(g.d_affine.name, []).append(index[node.target])
    reads = set()
    for e in step.code.values():
        if e is not None:
            reads |= {s.name for s in e.free_symbols}
    for g in bw.param_grads:
        reads |= {s.name for s in g.expr.free_symbols}
    for g in bw.param_grads:  # a per-element parameter: its gradient summed over steps and the batch
        src(f"d_{g.param} = np.zeros(n_h, dtype)", 1)
    src("for t in range(T - 1, -1, -1):", 1)
    for name in seq:
        if name in reads:
            src(f"{name} = {seq[name]}[t + 1]" if name in state_of else f"{name} = {seq[name]}[t]", 2)
    for s in cell.states:
        if s.prev in reads:
            src(f"{s.prev} = {seq[s.name]}[t]", 2)
    src(f"{OUTPUT_GRAD} = dys[t]", 2)
    src("dZ_t = dZ[:, t]", 2)
    printer = KernelPrinter({})
    computed = [Adjoint(a.target, e) for a in bw.adjoints if (e := step.code.get(a.target)) is not None]
    reused = candidates(cell)
    shared, reduced_of = _shared_subexpressions(computed)
    emitted: set[sympy.Symbol] = set()
    x_grad = None
    pending = list(bw.param_grads)
    for a in bw.adjoints:
        if pending and (a.target in prevs or a.target in cell.inputs):  # before δs(t−1) overwrites δs(t)[via t+1]
            for g in pending:
                src(f"# {text.doprint(adjoint(g.param))} += Σ_batch {text.doprint(g.expr)}", 2)
                src(f"d_{g.param} += ({printer.doprint(g.expr)}).sum(axis=0)", 2)
            pending = []
        if a.target in cell.inputs:
            x_grad = a
            continue
        if a.target in step.folded_into:  # read by one equation only, which computes it in place
            into = text.doprint(adjoint(step.folded_into[a.target]))
            src(f"# {text.doprint(a.symbol)} = {text.doprint(a.expr)} (computed within {into})", 2)
            continue
        expr = reduced_of[a.target]
        src(f"# {text.doprint(a.symbol)} = {text.doprint(a.expr)}", 2)
        for q in reused:
            if sympy.Symbol(q.name) in step.code[a.target].free_symbols and not a.expr.has(sympy.Symbol(q.name)):
                src(f"# (with {q.name} = {text.doprint(q.expr)}, from the forward pass)", 2)
        for name, value in shared:  # a value two equations need, computed once, before its first use
            if name not in emitted and name in _needs(expr, shared):
                src(f"{name} = {printer.doprint(value)}  # shared: {text.doprint(_inline(value, shared))}", 2)
                emitted.add(name)
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
                if len(nodes) == 1:
                    temps = [f"dZ_t[{index[nodes[0].target]}] @ W_{part}"]
                else:
                    temps = []
                    for run in _runs(layout, nodes):
                        i0 = nodes.index(run[0])
                        a0, b0 = index[run[0].target], index[run[-1].target] + 1
                        w_rows = _rows(i0, i0 + len(run), len(nodes))
                        temps.append(f"np.matmul(dZ_t{_rows(a0, b0, k)}, W_{part}{w_rows}, out={part}_dZW{w_rows}).sum(axis=0)")
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
        value = printer.doprint(reduced)
        target = a.symbol.name
        if target in slot:
            first, *more = slot[target]
            into = _into(printer, reduced, f"dZ_t[{first}]")
            src(f"{target} = {into}" if into else f"dZ_t[{first}] = {target} = {value}", 2)
            for i in more:
                src(f"dZ_t[{i}] = {target}", 2)
        elif a.target in prevs:
            src(f"d_{prevs[a.target]}_next = {value}", 2)
        else:
            src(f"{target} = {value}", 2)
    src()
    src("dZ2 = dZ.reshape(" + str(k) + ", T * B, n_h)", 1)
    # δx: one GEMM per block over all steps, on contiguous copies of the x-columns
    # (BLAS reads a column slice of W, a strided matrix, markedly slower)
    if x_grad is not None:
        terms = sympy.Add.make_args(x_grad.expr)
        assert all(isinstance(t, WeightT) for t in terms), "δx must be a sum of W_xᵀ δz"
        src(f"# {text.doprint(x_grad.symbol)} = {text.doprint(x_grad.expr)}, for all steps at once", 1)
        if kx == 1:
            src(f"d_xs = (dZ2[0] @ {block(x_nodes[0].weight, 'x')}).reshape(T, B, n_x)", 1)
        else:
            # one 2-D GEMM per block, accumulated in place: no (k, T·B, n_x) temporary to sum
            src(f"W_xT = np.stack([{', '.join(block(n.weight, 'x') for n in x_nodes)}])", 1)
            src(f"d_xs = dZ2[{index[x_nodes[0].target]}] @ W_xT[0]", 1)
            for j, n in enumerate(x_nodes[1:], 1):
                src(f"d_xs += dZ2[{index[n.target]}] @ W_xT[{j}]", 1)
            src("d_xs = d_xs.reshape(T, B, n_x)", 1)
    # weight gradients: one GEMM per column block over the stacked steps, written
    # into its columns (no concatenated copy of the parts)
    stacked: dict[str, str] = {}
    src("# each part vector at every step, stacked: (T·B, n) views", 1)
    for g in bw.weight_grads:
        for part in g.parts:
            if part in stacked:
                continue
            stacked[part] = f"{part}_steps"
            if part in cell.inputs:
                src(f"{part}_steps = xs.reshape(T * B, n_x)", 1)
            elif part in prevs:
                src(f"{part}_steps = {seq[prevs[part]]}[:-1].reshape(T * B, n_h)", 1)
            elif part in state_of:  # a state at t: its cache holds s(0)…s(T)
                src(f"{part}_steps = {seq[part]}[1:].reshape(T * B, n_h)", 1)
            else:
                src(f"{part}_steps = {seq[part]}.reshape(T * B, n_h)", 1)
    grads = {}
    for g in bw.weight_grads:
        i = index[next(n for n in order if n.weight == g.weight).target]
        parts = ", ".join(text.doprint(sympy.Symbol(p)) for p in g.parts)
        src(f"# {text.doprint(adjoint(g.weight))} = Σ_t {text.doprint(g.d_affine)} [{parts}]ᵀ", 1)
        if len(g.parts) == 1:
            src(f"d_{g.weight} = dZ2[{i}].T @ {stacked[g.parts[0]]}", 1)
        else:
            src(f"d_{g.weight} = np.empty({g.weight}.shape, dtype)", 1)
            for part, cols in zip(g.parts, _columns(cell, g.parts)):
                src(f"np.matmul(dZ2[{i}].T, {stacked[part]}, out=d_{g.weight}[:, {cols}])", 1)
        grads[g.weight] = f"d_{g.weight}"
    if bw.bias_grads:
        src("# δb = Σ_t Σ_batch δz(t): a row of ones times every block", 1)
        src("d_B = np.ones(T * B, dtype) @ dZ2", 1)
    for g in bw.bias_grads:
        i = index[next(n for n in order if n.bias == g.bias).target]
        src(f"d_{g.bias} = d_B[{i}]", 1)
        grads[g.bias] = f"d_{g.bias}"
    for g in bw.param_grads:
        grads[g.param] = f"d_{g.param}"
    entries = [f"{k!r}: {grads[k]}" for k in cell.params]
    entries.append("'xs': d_xs")
    entries += [f"'{s}0': d_{s}_next" for s in state_of]
    src("return {" + ", ".join(entries) + "}", 1)


def _shared_subexpressions(adjoints: list) -> tuple[list[tuple[sympy.Symbol, sympy.Expr]], dict[str, sympy.Expr]]:  # noqa: ANN001
    """SymPy's ``cse`` over the step's adjoint equations: the values several
    equations need (the complement 1 − G_u of a gate, …), named ``shared0``…
    Matrix products (``WeightT``) are kept whole, never split across names."""
    atoms = sorted({w for a in adjoints for w in a.expr.atoms(WeightT)}, key=sympy.default_sort_key)
    hide = {w: sympy.Symbol(f"_matmul_{i}") for i, w in enumerate(atoms)}
    back = {v: k for k, v in hide.items()}
    shared, reduced = sympy.cse(
        [a.expr.xreplace(hide) for a in adjoints], symbols=sympy.numbered_symbols("shared"), ignore=tuple(back), order="none"
    )
    shared = [(n, v.xreplace(back)) for n, v in shared]
    reduced_of = {a.target: r.xreplace(back) for a, r in zip(adjoints, reduced)}
    # a shared value that is a whole equation, computed before its other
    # readers, keeps that equation's name (d_h = d_c*(1 - Gz), not shared0)
    for name, value in list(shared):
        whole = [a for a in adjoints if reduced_of[a.target] == name]
        readers = [a for a in adjoints if reduced_of[a.target].has(name)]
        if whole and readers[0] is whole[0] and not any(v.has(name) for _, v in shared):
            rename = {name: whole[0].symbol}
            reduced_of = {t: r.xreplace(rename) for t, r in reduced_of.items()}
            reduced_of[whole[0].target] = value
            shared.remove((name, value))
    return shared, reduced_of


def _inline(expr: sympy.Expr, shared: list[tuple[sympy.Symbol, sympy.Expr]]) -> sympy.Expr:
    """``expr`` with every shared name replaced by its value, nested ones included."""
    values = dict(shared)
    for _ in range(len(values) + 1):
        new = expr.xreplace(values)
        if new == expr:
            break
        expr = new
    return expr


def _needs(expr: sympy.Expr, shared: list[tuple[sympy.Symbol, sympy.Expr]]) -> set[sympy.Symbol]:
    """The shared names ``expr`` uses, directly or through other shared names."""
    values = dict(shared)
    need, todo = set(), [s for s in expr.free_symbols if s in values]
    while todo:
        s = todo.pop()
        if s not in need:
            need.add(s)
            todo += [u for u in values[s].free_symbols if u in values]
    return need


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
