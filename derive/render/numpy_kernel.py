"""Generate a cell's NumPy kernel (``derive/kernels/<cell>.py``) from its
forward equations and derived backward equations: the NumPy printer of the
cell's kernel plan (:mod:`derive.render.plan`, where every decision below
is made; this module only spells it in NumPy: ``out=`` arguments, stacked
and contiguous weight copies, slices of ``Z`` and ``dZ``).

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

import sympy
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from .. import functions
from ..cell import Cell
from ..derivation import OUTPUT_GRAD
from ..functions import sigmoid
from .plan import (
    ActivationRun, AdjointGemm, AdjointStatement, Assign, ColumnBlock, ColumnSlice, Destination, Folded, Function,
    Gemm, KernelPlan, NodeGemm, ParamGrad, Slot, Source, StateGemm, plan_kernel,
)

COMMAND = "derive build"
RUNTIME_IMPORT = "# <runtime import>"
# the runtime's functions a kernel may call, in the order they are imported
_RUNTIME_CALLS = ("sigmoid", "sigmoid_of_half", *sorted({f for a in functions.REGISTRY for f in a.runtime} - {"sigmoid"}))


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

    def _print_Mul(self, expr: sympy.Mul) -> str:
        """A product with a division prints as numerator/(denominator): the
        denominator whole, so that a square in it (printed h*h) stays under
        the division (a/(h*h), never a/h*h)."""
        if any(isinstance(f, sympy.Pow) and f.exp.is_negative for f in expr.args):
            num, den = expr.as_numer_denom()
            return f"{self.parenthesize(num, PRECEDENCE['Mul'])}/({self._print(den)})"
        return super()._print_Mul(expr)

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        if exp == 2:  # h*h: one multiply, dtype kept
            b = self._print(base)
            return f"{b}*{b}" if isinstance(base, sympy.Symbol) else f"({b})*({b})"
        if exp == -1:  # a division: 1/(f + i), dtype kept
            return f"1/{self.parenthesize(base, PRECEDENCE['Pow'])}"
        return super()._print_Pow(expr, rational)


functions.install_printers(KernelPrinter, KernelPrinter._print_activation)


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
    kernel = plan_kernel(cell)
    src = _Source()
    command = command or COMMAND
    src(f"# Generated by `{command}` from the equations of {cell.source}: do not edit.")
    src(f"# Change the cell and run `{command}`; `derive check` fails while this file is stale.")
    src('"""' + f"{cell.title}: forward and backward (BPTT) kernels derived from its equations.")
    src()
    src("Forward step:")
    for eq in kernel.equations:
        src(f"    {eq}")
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
    _emit_constants_and_init(src, cell)
    _ForwardPrinter(src, kernel).emit()
    _BackwardPrinter(src, kernel).emit()
    body = src.text()
    runtime = ["check_params", "check_sequence", "check_states", "init_uniform"]
    runtime += [f for f in _RUNTIME_CALLS if re.search(rf"\b{f}\(", body)]
    return body.replace(RUNTIME_IMPORT, f"from derive.runtime import {', '.join(runtime)}", 1)


def _emit_constants_and_init(src: _Source, cell: Cell) -> None:
    """The module constants every step-loop kernel defines (CELL, STATES,
    OUTPUT, PARAM_SHAPES) and its ``init_params``."""
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


def _emit_input_checks(src: _Source, zeros_later: bool = False) -> None:
    """The start of ``forward`` common to every backend: params, xs and
    state0 checked by the runtime (same errors everywhere). ``zeros_later``:
    a state0 of None stays None (the kernel writes the zeros itself)."""
    src("sizes, dtype = check_params(params, PARAM_SHAPES)", 1)
    src("n_x, n_h = sizes['n_x'], sizes['n_h']", 1)
    src("xs = check_sequence('xs', xs, (None, None, n_x), dtype, dims=('T', 'B', 'n_x'), why=sizes.why('n_x'))", 1)
    src("T, B, _ = xs.shape", 1)
    if zeros_later:
        src("if state0 is not None:  # None: zeros, written into the first step's states below", 1)
        src("state0 = check_states('state0', state0, STATES, (B, n_h), dtype)", 2)
    else:
        src("state0 = check_states('state0', state0, STATES, (B, n_h), dtype)", 1)
    src("# copies: backward reads these, and the caller may change their arrays or dict meanwhile", 1)


def _emit_backward_head(src: _Source, states: object, cached: str) -> None:
    """``backward``'s signature, docstring and cache checks, common to the
    step-loop backends; ``cached`` is an array of the cache whose last axis is n_h."""
    src("def backward(")
    src("cache: dict[str, Any], dys: np.ndarray, dstate: dict[str, np.ndarray] | None = None", 1)
    src(") -> dict[str, np.ndarray]:")
    src('"""Gradients of L = Σ_t ⟨dys(t), ys(t)⟩ + Σ_s ⟨dstate[s], s(T)⟩.', 1)
    src("", 1)
    initial = ", ".join(f"``{s}0``" for s in states)
    src(f"Returns the gradient of every parameter (same keys), of ``xs`` and of each initial state ({initial}).", 1)
    src('"""', 1)
    src("if not isinstance(cache, dict) or 'final' not in cache or 'params' not in cache:", 1)
    src("raise ValueError(\"cache: expected the cache returned by forward(), got \" + type(cache).__name__)", 2)
    src("if cache.get('cell') != CELL:", 1)
    src("raise ValueError(f\"cache: expected the cache of {CELL}.forward(), got one from {cache.get('cell')}.forward()\")", 2)
    src("params, xs = cache['params'], cache['xs']", 1)
    src("T, B, n_x = xs.shape", 1)
    src("dtype = xs.dtype", 1)
    src(f"n_h = cache[{cached!r}].shape[2]", 1)


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


def _emit_part_steps(src: _Source, kernel: KernelPlan) -> None:
    """``<part>_steps``: each part vector of a weight at every step, a (T·B, n) view of its cache (both printers)."""
    if not kernel.part_steps:
        return
    src("# each part vector at every step, stacked: (T·B, n) views", 1)
    for p in kernel.part_steps:
        cache = f"{p.cached}_seq"
        view = {Source.INPUT: "xs.reshape(T * B, n_x)",
                Source.PREVIOUS: f"{cache}[:-1].reshape(T * B, n_h)",
                Source.STATE: f"{cache}[1:].reshape(T * B, n_h)",
                Source.CACHED: f"{cache}.reshape(T * B, n_h)"}[p.source]
        src(f"{p.part}_steps = {view}", 1)


def _slice(cols: ColumnSlice) -> str:
    """``:n_h``, ``n_h:``, ``n_h:n_h + n_x``."""
    return f"{' + '.join(cols.start)}:{'' if cols.stop is None else ' + '.join(cols.stop)}"


class _Printer:
    """What the forward and backward printers share: the output, the plan,
    the parameters unpacked with their column blocks, the cache's arrays."""

    def __init__(self, src: _Source, kernel: KernelPlan) -> None:
        self.src = src
        self.plan = kernel
        self.cell = kernel.cell
        self.k = len(kernel.blocks)
        self.seq = {c.name: f"{c.name}_seq" for c in kernel.cached}
        self.states = tuple(s.name for s in kernel.cell.states)
        self.expr = KernelPrinter({})

    def unpack_params(self) -> None:
        src, names = self.src, list(self.cell.params)
        src(f"{', '.join(names)} = (params[k] for k in {tuple(names)!r})", 1)
        src("# column blocks: a weight on a concatenation is [W_c, W_x] on [c(t-1), x(t)]", 1)
        by_weight: dict[str, list[ColumnBlock]] = {}
        for c in self.plan.columns:
            by_weight.setdefault(c.weight, []).append(c)
        for weight, cols in by_weight.items():
            src(f"{', '.join(c.name for c in cols)} = {', '.join(f'{weight}[:, {_slice(c.columns)}]' for c in cols)}", 1)

    def slot(self, slot: Slot) -> str:
        return f"{self.seq[slot.name]}[t + {slot.offset}]" if slot.offset else f"{self.seq[slot.name]}[t]"


class _ForwardPrinter(_Printer):
    """``forward``: the plan's layout, input projection and step in NumPy."""

    def scaled(self, halved: bool, value: str) -> str:
        return f"half * {value}" if halved else value

    def emit(self) -> None:
        src, kernel, cell, k, seq, state_of = self.src, self.plan, self.cell, self.k, self.seq, self.states
        src("def forward(")
        src("params: dict[str, np.ndarray], xs: np.ndarray, state0: dict[str, np.ndarray] | None = None", 1)
        src(") -> tuple[np.ndarray, dict[str, Any]]:")
        src(f'"""Run the cell over ``xs`` (T, B, n_x) from ``state0`` ({", ".join(f"{s!r}: (B, n_h)" for s in state_of)}; zeros if None).', 1)
        src("", 1)
        src(f"Returns ``ys`` (T, B, n_h), the output {cell.output}(t) of every step (read-only), and the", 1)
        src("cache ``backward`` needs; ``cache['final']`` holds the final states.", 1)
        src('"""', 1)
        _emit_input_checks(src)
        src("params = {k: np.array(params[k], dtype) for k in PARAM_SHAPES}", 1)
        self.unpack_params()
        src()
        src(f"# Z: the pre-activation of every affine node, one (T, B, n_h) block each: {', '.join(kernel.block_names)}.", 1)
        if any(b.activation for b in kernel.blocks):
            src("# A σ or tanh whose argument feeds nothing else overwrites that block in place:", 1)
            src("# Z is then the cache of its gate. Blocks are contiguous, neighbours share one add or σ.", 1)
        if kernel.halved:
            src("# σ(z) = ½(1 + tanh(z/2)): the ½ is folded into the weights and bias of each σ's", 1)
            src("# block, which holds z/2 (exact: a power of two), so σ is tanh, × ½, + ½.", 1)
            src("half = dtype.type(0.5)", 1)
        src(f"Z = np.empty(({k}, T, B, n_h), dtype)", 1)
        for c in sorted((c for c in kernel.cached if c.block is not None), key=lambda c: c.block):
            src(f"{seq[c.name]} = Z[{c.block}]", 1)
        for c in kernel.cached:
            if c.block is None:
                src(f"{seq[c.name]} = np.empty(({'T + 1' if c.state else 'T'}, B, n_h), dtype)", 1)
        for s in cell.states:
            src(f"{seq[s.name]}[0] = state0[{s.name!r}]", 1)
        self.projection()
        for sw in kernel.state_weights:
            s = sw.state
            src(f"# the blocks acting on {sw.text}, stacked: one GEMM per step", 1)
            if len(sw.nodes) == 1:
                src(f"W_{s} = {self.scaled(sw.halved[0], sw.weights[0] + '.T')}.copy()", 1)
                src(f"{s}W = np.empty((B, n_h), dtype)", 1)
            else:
                src(f"W_{s} = {_c_stack([self.scaled(h, w + '.T') for w, h in zip(sw.weights, sw.halved)])}", 1)
                src(f"{s}W = np.empty(({len(sw.nodes)}, B, n_h), dtype)", 1)
        buffers: set[str] = set()
        for nw in kernel.node_weights:
            # a contiguous copy: BLAS multiplies by a transposed view markedly slower
            if nw.halved:
                src(f"{nw.weight}T_half = np.ascontiguousarray(half * {nw.weight}.T)", 1)
            else:
                src(f"{nw.weight}T = np.ascontiguousarray({nw.weight}.T)", 1)
            if f"{nw.part}W" not in buffers:
                src(f"{nw.part}W = np.empty((B, n_h), dtype)", 1)
                buffers.add(f"{nw.part}W")
        src()
        src("for t in range(T):", 1)
        for s in cell.states:
            src(f"{s.prev} = {seq[s.name]}[t]", 2)
        src("Z_t = Z[:, t]", 2)
        step = {StateGemm: self.state_gemm, ActivationRun: self.activation_run, NodeGemm: self.node_gemm, Assign: self.assign}
        for statement in kernel.forward:
            step[type(statement)](statement)
        src()
        out = seq[cell.output]
        src(f"ys = {out}[1:]" if cell.output in state_of else f"ys = {out}", 1)
        src("ys.flags.writeable = False  # a view of the cache: writing into it would corrupt backward", 1)
        finals = ", ".join(f"{s!r}: {seq[s]}[T].copy()" for s in state_of)
        entries = ", ".join(f"{n!r}: {a}" for n, a in seq.items())
        # xs as backward reads it: a view of the copy in xs1 (the caller may change xs)
        xs_kept = "xs1[:, :n_x].reshape(T, B, n_x)" if kernel.input_projection.blocks else "xs.copy()"
        src(f"cache = {{'cell': CELL, 'params': params, 'xs': {xs_kept}, 'final': {{{finals}}}, {entries}}}", 1)
        src("return ys, cache", 1)
        src()
        src()

    def projection(self) -> None:
        src, k = self.src, self.k
        x_blocks, others = self.plan.input_projection.blocks, self.plan.input_projection.others
        kx = len(x_blocks)
        if kx:
            # the bias as the weight of a column of ones: the GEMM adds it, no pass over Z
            src("# the input parts of every step and the biases at once: [x(t), 1] times [W_x; b], one GEMM per block", 1)
            src("xs1 = np.empty((T * B, n_x + 1), dtype)", 1)
            src("xs1[:, :n_x] = xs.reshape(T * B, n_x)", 1)
            src("xs1[:, n_x] = 1", 1)
            rows = [self.scaled(b.halved, f"np.vstack([{b.x_weight}.T, {b.bias or 'np.zeros(n_h, dtype)'}])") for b in x_blocks]
            src(f"W_x1 = {_c_stack(rows)}", 1)
            src(f"np.matmul(xs1, W_x1, out=Z{_rows(0, kx, k)}.reshape({kx}, T * B, n_h))", 1)
        if others:
            biases = [self.scaled(b.halved, b.bias) if b.bias else "np.zeros(n_h, dtype)" for b in others]
            src(f"Z[{kx}:] = np.stack([{', '.join(biases)}])[:, None, None, :]  # the biases of the blocks without x(t)", 1)

    # -- the step's statements, one method per kind
    def state_gemm(self, st: StateGemm) -> None:
        src, sw, k = self.src, st.weights, self.k
        for eq in st.equations:
            src(f"# {eq}", 2)
        others = "the x(t) parts and biases are in Z_t" if sw.with_input else "the biases are in Z_t"
        src(f"# ({others}; add the {sw.text} parts)", 2)
        s = sw.state
        if len(sw.runs) == 1:
            a, b = sw.runs[0].blocks
            src(f"Z_t{_rows(a, b, k, squeeze=len(sw.nodes) == 1)} += np.matmul({s}, W_{s}, out={s}W)", 2)
        else:
            src(f"np.matmul({s}, W_{s}, out={s}W)", 2)
            for run in sw.runs:
                src(f"Z_t{_rows(*run.blocks, k)} += {s}W{_rows(*run.rows, len(sw.nodes))}", 2)

    def activation_run(self, run: ActivationRun) -> None:
        src = self.src
        for eq in run.equations:
            src(f"# {eq}", 2)
        fn = "sigmoid_of_half" if run.function is Function.SIGMOID else "np.tanh"
        rows = f"Z_t{_rows(*run.blocks, self.k, squeeze=True)}"
        if len(run.targets) == 1:
            src(f"{run.targets[0]} = {fn}({rows}, out={rows})", 2)
        else:
            src(f"{fn}({rows}, out={rows})", 2)
            src(f"{', '.join(run.targets)} = {rows}", 2)

    def node_gemm(self, st: NodeGemm) -> None:
        src, i = self.src, st.block
        if st.equation is not None:
            src(f"# {st.equation}" + ("" if st.weights else " (before the loop)"), 2)
        for w in st.weights:
            src(f"Z_t[{i}] += np.matmul({w.part}, {w.weight}T{'_half' if w.halved else ''}, out={w.part}W)", 2)
        if st.named:
            src(f"{st.node} = Z_t[{i}]", 2)

    def assign(self, st: Assign) -> None:
        src, printer = self.src, self.expr
        src(f"# {st.equation}", 2)
        for q in st.kept:  # a term of the sum, computed into the cache, then added
            src(f"{q.name} = {_into(printer, q.expr, self.slot(Slot(q.name, 0)))}  # kept for backward", 2)
        if st.destination is None:
            src(f"{st.target} = {printer.doprint(st.expr)}", 2)
            return
        out = self.slot(st.destination)
        if st.mix:
            g, v, u = (printer.doprint(x) for x in (st.mix.g, st.mix.v, st.mix.u))
            src(f"# as {st.mix.text}: three passes, no temporary", 2)
            src(f"{st.target} = np.subtract({v}, {u}, out={out})", 2)
            if st.mix.kept:  # the middle pass goes to the cache: backward reads it
                src(f"{st.mix.kept} = np.multiply({st.target}, {g}, out={self.slot(Slot(st.mix.kept, 0))})  # kept for backward", 2)
                src(f"np.add({u}, {st.mix.kept}, out={st.target})", 2)
            else:
                src(f"{st.target} *= {g}", 2)
                src(f"{st.target} += {u}", 2)
            return
        into = _into(printer, st.expr, out)
        src(f"{st.target} = {into}" if into else f"{out} = {st.target} = {printer.doprint(st.expr)}", 2)


class _BackwardPrinter(_Printer):
    """``backward``: the plan's step in reverse, then the after-loop GEMMs."""

    def emit(self) -> None:
        src, kernel, k, seq, state_of = self.src, self.plan, self.k, self.seq, self.states
        _emit_backward_head(src, state_of, next(iter(seq)))
        src("dys = check_sequence('dys', dys, (T, B, n_h), dtype, why=' like ys')", 1)
        src("dstate = check_states('dstate', dstate, STATES, (B, n_h), dtype)", 1)
        self.unpack_params()
        for name, array in seq.items():
            src(f"{array} = cache[{name!r}]", 1)
        src()
        for nw in kernel.node_weights:  # blocks multiplied at every step on a node's value (δr_c = W_hcᵀ δz_h)
            src(f"{nw.weight} = np.ascontiguousarray({nw.weight})  # BLAS reads a column slice of W markedly slower", 1)
        for sw in kernel.state_weights:
            s = sw.state
            if len(sw.nodes) == 1:
                src(f"W_{s} = {sw.weights[0]}.copy()", 1)
            else:
                src(f"W_{s} = np.stack([{', '.join(sw.weights)}])", 1)
                src(f"{s}_dZW = np.empty(({len(sw.nodes)}, B, n_h), dtype)", 1)
        src(f"# dZ: δz of every affine node at every step, one (T, B, n_h) block each: {', '.join(kernel.adjoint_names)}", 1)
        src(f"dZ = np.empty(({k}, T, B, n_h), dtype)", 1)
        for c in kernel.carried:
            src(f"# {c.text}: from dstate at the last step", 1)
            src(f"{c.name} = dstate[{c.state!r}]", 1)
        for param in kernel.param_grads:  # a per-element parameter: its gradient summed over steps and the batch
            src(f"d_{param} = np.zeros(n_h, dtype)", 1)
        src("for t in range(T - 1, -1, -1):", 1)
        for load in kernel.backward_loads:
            src(f"{load.name} = {self.slot(Slot(load.cached, load.offset))}", 2)
        src(f"{OUTPUT_GRAD} = dys[t]", 2)
        src("dZ_t = dZ[:, t]", 2)
        step = {ParamGrad: self.param_grad, Folded: self.folded, AdjointStatement: self.adjoint_statement}
        for statement in kernel.backward:
            step[type(statement)](statement)
        src()
        src("dZ2 = dZ.reshape(" + str(k) + ", T * B, n_h)", 1)
        self.after_loop()

    # -- the step's statements, one method per kind
    def param_grad(self, g: ParamGrad) -> None:
        self.src(f"# {g.equation}", 2)
        self.src(f"d_{g.param} += ({self.expr.doprint(g.expr)}).sum(axis=0)", 2)

    def folded(self, f: Folded) -> None:
        self.src(f"# {f.equation} (computed within {f.into})", 2)

    def gemm(self, gemm: Gemm) -> str:
        """The value of a GEMM of the step, as an expression."""
        if isinstance(gemm, AdjointGemm):
            return f"{gemm.adjoint} @ {gemm.weight}"
        sw, s = gemm.weights, gemm.weights.state
        if len(sw.nodes) == 1:
            return f"dZ_t[{sw.blocks[0]}] @ W_{s}"
        temps = []
        for run in sw.runs:
            w_rows = _rows(*run.rows, len(sw.nodes))
            temps.append(f"np.matmul(dZ_t{_rows(*run.blocks, self.k)}, W_{s}{w_rows}, out={s}_dZW{w_rows}).sum(axis=0)")
        return " + ".join(temps)

    def adjoint_statement(self, a: AdjointStatement) -> None:
        src, printer = self.src, self.expr
        src(f"# {a.equation}", 2)
        for name, text in a.reused:
            src(f"# (with {name} = {text}, from the forward pass)", 2)
        for v in a.shared:  # a value two equations need, computed once, before its first use
            src(f"{v.name} = {printer.doprint(v.value)}  # shared: {v.text}", 2)
        if a.expr is None:  # the GEMM is the value: δr_c = δz_h @ W_hc, no temporary
            value, into = self.gemm(a.gemms[0]), None
        else:
            for gemm in a.gemms:
                src(f"{gemm.output} = {self.gemm(gemm)}", 2)
            value = printer.doprint(a.expr)
        if a.destination is Destination.DZ:
            first, *more = a.slots
            if a.expr is not None:
                into = _into(printer, a.expr, f"dZ_t[{first}]")
            src(f"{a.target} = {into}" if into else f"dZ_t[{first}] = {a.target} = {value}", 2)
            for i in more:
                src(f"dZ_t[{i}] = {a.target}", 2)
        elif a.destination is Destination.CARRY:
            src(f"{a.carry} = {value}", 2)
        else:
            src(f"{a.target} = {value}", 2)

    def after_loop(self) -> None:
        src, kernel = self.src, self.plan
        # δx: one GEMM per block over all steps, on contiguous copies of the x-columns
        # (BLAS reads a column slice of W, a strided matrix, markedly slower)
        xg = kernel.input_grad
        if xg is not None:
            src(f"# {xg.equation}, for all steps at once", 1)
            if len(xg.blocks) == 1:
                src(f"d_xs = (dZ2[{xg.blocks[0][0]}] @ {xg.blocks[0][1]}).reshape(T, B, n_x)", 1)
            else:
                # one 2-D GEMM per block, accumulated in place: no (k, T·B, n_x) temporary to sum
                src(f"W_xT = np.stack([{', '.join(w for _, w in xg.blocks)}])", 1)
                src(f"d_xs = dZ2[{xg.blocks[0][0]}] @ W_xT[0]", 1)
                for j, (i, _) in enumerate(xg.blocks[1:], 1):
                    src(f"d_xs += dZ2[{i}] @ W_xT[{j}]", 1)
                src("d_xs = d_xs.reshape(T, B, n_x)", 1)
        # weight gradients: one GEMM per column block over the stacked steps, written
        # into its columns (no concatenated copy of the parts)
        _emit_part_steps(src, kernel)
        for g in kernel.weight_grads:
            src(f"# {g.equation}", 1)
            if len(g.parts) == 1:
                src(f"d_{g.weight} = dZ2[{g.block}].T @ {g.parts[0]}_steps", 1)
            else:
                src(f"d_{g.weight} = np.empty({g.weight}.shape, dtype)", 1)
                for part, cols in zip(g.parts, g.columns):
                    src(f"np.matmul(dZ2[{g.block}].T, {part}_steps, out=d_{g.weight}[:, {_slice(cols)}])", 1)
        if kernel.bias_grads:
            src("# δb = Σ_t Σ_batch δz(t): a row of ones times every block", 1)
            src("d_B = np.ones(T * B, dtype) @ dZ2", 1)
        for b in kernel.bias_grads:
            src(f"d_{b.bias} = d_B[{b.block}]", 1)
        src("return {" + ", ".join(f"{key!r}: {self.gradient(key)}" for key in kernel.gradients) + "}", 1)

    def gradient(self, key: str) -> str:
        """The array backward returns under ``key``."""
        if key in self.cell.params:
            return f"d_{key}"
        if key == "xs":
            return "d_xs"
        return next(c.name for c in self.plan.carried if f"{c.state}0" == key)  # an initial state s0
