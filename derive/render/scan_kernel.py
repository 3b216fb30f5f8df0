"""Generate the parallel-scan kernel of a linear-scan cell
(``derive/kernels/scan/<cell>.py``), beside its step-loop kernel.

A cell whose state follows s(t) = a(t) ⊙ s(t−1) + b(t) with a and b
functions of x(t) alone (:func:`derive.structure.classify`: minGRU,
minLSTM) needs no loop over time for anything but that one recurrence, and
that one is a blocked scan (:mod:`derive.scan`). The kernel walks through
time a chunk of :func:`derive.scan.chunk_steps` steps at a time (arrays of
about 32K elements, which stay in the processor's cache):

* forward: the affine nodes of the input alone for every step by one GEMM
  each into a block of ``Z`` (the bias folded in by a column of ones, as
  the loop kernel does); an activation of a block that nothing else reads
  overwrites it in place (σ on z/2, its ½ folded into the GEMM); then, chunk
  by chunk, every other node, b(t) written where the states go, and the
  chunk's states by :func:`derive.scan.linear_scan_into` from the state the
  previous chunk ended with. a(t) is never stored.
* backward: chunk by chunk from the last, a(t) evaluated again, the total
  gradient g(t) on s(t) by :func:`derive.scan.reverse_linear_scan`
  (g(t) = δy(t) + a(t+1) ⊙ g(t+1), from the gradient the next chunk
  passed back), then the cell's *derived* backward equations on the chunk
  with δs(t) = g(t); none of them reads across time. The δz of the input
  GEMMs go side by side into one (C·B, G·n_h) array: δx, the weights' and
  the biases' gradients are one GEMM or one sum per chunk.

Every temporary is a chunk: a whole (T, B, n) temporary would cost a fresh
allocation of tens of megabytes (page faults) and a trip through main
memory for each operation, which is what made the first, whole-array
version of this kernel slower than the step loop. The last operation of a
node is written into its array (``out=``), and the printer moves a sign
into a sum rather than spend a pass negating.

Same contract as the loop kernel (``forward(params, xs, state0=None)``,
``backward(cache, dys, dstate=None)``, ``init_params`` drawing the same
parameters, the same gradients).
"""

from __future__ import annotations

import re

import sympy

from .. import functions
from ..cell import Cell
from ..derivation import OUTPUT_GRAD, carried_in
from ..graph import Affine, Elementwise, WeightT
from ..structure import classify
from sympy.printing.precedence import PRECEDENCE

from .numpy_kernel import KernelPrinter, _emit_init, _emit_input_checks
from .text import CellTextPrinter

COMMAND = "derive build"
_RUNTIME = "# <runtime import>"


class NotAScanCell(ValueError):
    """A cell whose recurrence is not one linear scan ending at its output."""


def scannable(cell: Cell) -> str | None:
    """Why ``cell`` has no scan kernel, or None when it has one: one state,
    a linear scan (:mod:`derive.structure`), the output that state."""
    structure = classify(cell)
    if len(cell.states) != 1:
        return f"it has {len(cell.states)} states; the scan kernel handles one"
    if not structure.linear_scan:
        return f"its recurrence is not a linear scan ({structure.classification})"
    if cell.output != cell.states[0].name:
        return f"its output {cell.output!r} is not its state {cell.states[0].name!r}"
    return None


class _ScanPrinter(KernelPrinter):
    """The kernel printer, with W_pᵀ δz as a GEMM on the column block of part p."""

    def __init__(self, names: dict[str, str], blocks: dict[tuple[str, str], str]) -> None:
        super().__init__(names)
        self.blocks = blocks

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        if expr.exp == 2:  # the loop printer's h*h, parenthesised: it may stand in a denominator
            return f"({super()._print_Pow(expr, rational)})"
        return super()._print_Pow(expr, rational)

    def _print_Mul(self, expr: sympy.Mul) -> str:
        """−u ⊙ (v − w) prints as u ⊙ (w − v): the sign goes into a sum, no negation pass."""
        coeff, rest = expr.as_coeff_Mul()
        factors = sympy.Mul.make_args(rest)
        if coeff == -1 and not any(f.is_Pow and f.exp.is_negative for f in factors):
            flip = next((k for k, f in enumerate(factors) if isinstance(f, sympy.Add)), None)
            if flip is not None:
                flipped = [*factors[:flip], -factors[flip], *factors[flip + 1:]]
                return "*".join(self.parenthesize(f, PRECEDENCE["Mul"]) for f in flipped)
        return super()._print_Mul(expr)

    def _print_Add(self, expr: sympy.Add, order: str | None = None) -> str:
        """A sum starting with a positive term when it has one: h - c_prev, not -c_prev + h."""
        terms = list(self._as_ordered_terms(expr, order=order))
        def positive(t: sympy.Expr) -> bool:  # as printed: −u ⊙ (v − w) prints as u ⊙ (w − v)
            coeff, rest = t.as_coeff_Mul()
            return not t.could_extract_minus_sign() or (
                coeff == -1 and any(isinstance(f, sympy.Add) for f in sympy.Mul.make_args(rest))
                and not any(f.is_Pow and f.exp.is_negative for f in sympy.Mul.make_args(rest)))

        first = next((k for k, t in enumerate(terms) if positive(t)), 0)
        terms = [terms[first], *terms[:first], *terms[first + 1:]]
        out = self._print(terms[0])  # a term of a sum is never a sum: no parentheses
        for term in terms[1:]:
            if term.could_extract_minus_sign():
                out += f" - {self.parenthesize(-term, PRECEDENCE['Add'])}"
            else:
                out += f" + {self.parenthesize(term, PRECEDENCE['Add'])}"
        return out

    def _print_WeightT(self, expr: WeightT) -> str:
        return f"({self._print(expr.adjoint)} @ {self.blocks[(expr.weight, expr.part)]})"


def _columns(cell: Cell, node: Affine) -> dict[str, str]:
    """The column slice of ``node``'s weight that acts on each part, as NumPy source."""
    sizes = {"n_x": "n_x", "n_h": "n_h"}
    out, start = {}, "0"
    for part in node.parts:
        size = sizes[cell.vectors[part].size]
        stop = size if start == "0" else f"{start} + {size}"
        out[part] = f"{node.weight}[:, {start}:{stop}]" if len(node.parts) > 1 else node.weight
        start = stop
    return out


_CALL = re.compile(r"[\w.]+\(\{\}(, [^{}()]*)?\)")
"""An activation spelled as a call whose first argument is its input: it takes ``out=``."""


def _into(printer: KernelPrinter, expr: sympy.Expr, dest: str) -> str:
    """A statement writing ``expr`` into the array ``dest`` with no temporary
    for its last operation: its top-level add, subtract, multiply, divide
    or activation is called with ``out=dest``; any other expression is
    assigned (``dest[...] = …``)."""
    p = printer.doprint
    entry = functions.of(expr)
    if entry is not None and _CALL.fullmatch(entry.numpy):
        printer.runtime.update(entry.runtime)
        return f"{entry.numpy.format(p(expr.args[0]))[:-1]}, out={dest})"
    if isinstance(expr, sympy.Add):
        terms = expr.as_ordered_terms()
        k = next((k for k, t in enumerate(terms) if not t.could_extract_minus_sign()), 0)  # 1 - Gu, not -Gu + 1
        first, tail = terms[k], sympy.Add(*terms[:k], *terms[k + 1:])
        if tail.could_extract_minus_sign():
            return f"np.subtract({p(first)}, {p(-tail)}, out={dest})"
        return f"np.add({p(first)}, {p(tail)}, out={dest})"
    if isinstance(expr, sympy.Mul):
        num, den = expr.as_numer_denom()
        if den != 1:
            return f"np.divide({p(num)}, {p(den)}, out={dest})"
        factors = list(expr.as_ordered_factors())
        if factors[0] == -1:  # −u ⊙ (v − 1) as u ⊙ (1 − v): the sign into a factor that is a sum
            flip = next((k for k, f in enumerate(factors) if isinstance(f, sympy.Add)), None)
            if flip is not None:
                factors = [*factors[1:flip], -factors[flip], *factors[flip + 1:]]
        *rest, last = factors
        return f"np.multiply({p(sympy.Mul(*rest))}, {p(last)}, out={dest})"
    return f"{dest}[...] = {p(expr)}"


def generate(cell: Cell, command: str | None = None) -> str:
    """The source of ``cell``'s scan kernel; raises :class:`NotAScanCell`
    (naming why) for a cell whose recurrence is not a linear scan."""
    why = scannable(cell)
    if why is not None:
        raise NotAScanCell(f"cell {cell.name!r} has no parallel-scan kernel: {why}")
    command = command or COMMAND
    text = CellTextPrinter(cell)
    state = cell.states[0]
    scan = classify(cell).scans[0]
    s, s_prev = state.name, state.prev
    x = cell.inputs[0]
    affines = [n for n in cell.nodes if isinstance(n, Affine)]
    blocks: dict[tuple[str, str], str] = {}
    for node in affines:
        for part, source in _columns(cell, node).items():
            blocks[(node.weight, part)] = source
    printer = _ScanPrinter({}, blocks)  # every symbol is a local of its own name: a chunk of its steps
    lines: list[str] = []

    def src(line: str = "", indent: int = 0) -> None:
        lines.append("    " * indent + line if line else "")

    shapes = {}
    for name, p in cell.params.items():
        shapes[name] = (p.rows,) if p.is_bias else (p.rows, "+".join(p.cols))
    param_names = tuple(cell.params)
    a_text, b_text = text.doprint(scan.a), text.doprint(scan.b)

    src(f"# Generated by `{command}` from the equations of {cell.source}: do not edit.")
    src(f"# Change the cell and run `{command}`; `derive check` fails while this file is stale.")
    src('"""' + f"{cell.title}: parallel-scan forward and backward kernels derived from its equations.")
    src()
    src("Forward step:")
    for eq in cell.forward_equations():
        src(f"    {text.doprint(eq.lhs)} = {text.doprint(eq.rhs)}")
    src()
    src("The state's Jacobian is diagonal and independent of the state, so")
    src(f"    {s}(t) = a(t) ⊙ {s}(t-1) + b(t),  a(t) = {a_text},  b(t) = {b_text},")
    src("a and b functions of the input alone: every node is computed for a chunk of")
    src("steps at once, and the recurrence by a blocked parallel scan (derive.scan),")
    src("forward and backward. Same contract, and same init_params, as the loop kernel")
    src("derive.kernels." + cell.name + ". Shapes are time-major: xs (T, B, n_x).")
    src('"""')
    src()
    src("from __future__ import annotations")
    src()
    src("from typing import Any")
    src()
    src("import numpy as np")
    src()
    src(_RUNTIME)
    src("from derive.scan import chunk_steps, linear_scan_into, reverse_linear_scan")
    src()
    src(f"CELL = {cell.name!r}")
    src("# the cache says which kernel made it: the step loop's backward cannot read this one, nor this one the loop's")
    src(f"CACHE_OF = {cell.name + ' (parallel scan)'!r}")
    src(f"STATES = {(s,)!r}")
    src(f"OUTPUT = {cell.output!r}")
    src(f"PARAM_SHAPES: dict[str, tuple[str, ...]] = {shapes!r}")
    src()
    src()
    _emit_init(src, shapes)  # the loop kernel's, draw for draw

    # -- what backward reads: the nodes stored by forward, one full (T, B, n) array each
    bw = cell.backward
    seeds = {carried_in(s): sympy.Symbol("g_chunk"), sympy.Symbol(OUTPUT_GRAD): sympy.Integer(0)}
    steps = [a for a in bw.adjoints if a.target != s_prev]
    gradient_in = next(a for a in bw.adjoints if a.target == s_prev)
    read = set()
    for expr in [*(a.expr.xreplace(seeds) for a in bw.adjoints), *(p.expr.xreplace(seeds) for p in bw.param_grads),
                 *(w.d_affine for w in bw.weight_grads), *(b.d_affine for b in bw.bias_grads)]:
        read |= {v.name for v in expr.free_symbols}
    read |= {p for w in bw.weight_grads for p in w.parts}
    read |= {v.name for v in scan.a.free_symbols}  # backward evaluates a(t) again, chunk by chunk
    stored = [n.target for n in cell.nodes if n.target != s and n.target in read]
    size = {name: cell.vectors[name].size for name in [*stored, x]}
    # the affine nodes of the input alone: one GEMM over every step, bias folded in
    # ([x(t), 1] times [W; b]), each into its (T, B, n_h) block of Z
    z_nodes = [n for n in affines if n.parts == (x,)]
    readers: dict[str, set[str]] = {}
    for node in cell.nodes:
        args = node.parts if isinstance(node, Affine) else node.arguments()
        for arg in args:
            readers.setdefault(arg, set()).add(node.target)
    scan_args = {v.name for v in (scan.a.free_symbols | scan.b.free_symbols)}
    # an activation of a block that nothing else reads overwrites that block: Z is then its array
    in_place: dict[str, str] = {}
    for node in cell.nodes:
        if isinstance(node, Elementwise) and functions.of(node.expr) is not None \
                and isinstance(node.expr.args[0], sympy.Symbol):
            z = node.expr.args[0].name
            if any(z == n.target for n in z_nodes) and readers.get(z) == {node.target} \
                    and z not in read and z not in scan_args and z not in in_place.values():
                in_place[node.target] = z
    block = {n.target: k for k, n in enumerate(z_nodes)}
    block.update({target: block[z] for target, z in in_place.items()})
    own = [n for n in stored if n not in block]  # stored in arrays of their own
    # σ in place: its block holds z/2 (the ½ folded into the weights and bias, exact), σ = ½ tanh(z/2) + ½
    halved = {z for target, z in in_place.items() if functions.of(cell.node(target).expr).name == "sigmoid"}

    # -- forward
    src("def forward(")
    src("params: dict[str, np.ndarray], xs: np.ndarray, state0: dict[str, np.ndarray] | None = None", 1)
    src(") -> tuple[np.ndarray, dict[str, Any]]:")
    src(f'"""Run the cell over ``xs`` (T, B, n_x) from ``state0`` ({s!r}: (B, n_h); zeros if None).', 1)
    src("", 1)
    src(f"Returns ``ys`` (T, B, n_h), the output {s}(t) of every step (read-only), and the", 1)
    src("cache ``backward`` needs; ``cache['final']`` holds the final state.", 1)
    src('"""', 1)
    _emit_input_checks(src)
    src("params = {k: np.array(params[k], dtype) for k in PARAM_SHAPES}", 1)
    src(f"{', '.join(param_names)}{',' if len(param_names) == 1 else ''} = (params[k] for k in {param_names!r})", 1)
    src("# [x(t), 1] for every step: the cache's copy of xs, and the biases' column", 1)
    src("xs1 = np.empty((T * B, n_x + 1), dtype)", 1)
    src("xs1[:, :n_x] = xs.reshape(T * B, n_x)", 1)
    src("xs1[:, n_x] = 1", 1)
    src("xs = xs1[:, :n_x].reshape(T, B, n_x)", 1)
    if z_nodes:
        names_z = ", ".join(n.target for n in z_nodes)
        src(f"# Z: {names_z} at every step, one (T, B, n_h) block each, by one GEMM per block", 1)
        for target, z in in_place.items():
            src(f"# (then {target} = f({z}) in place of {z}: nothing else reads {z})", 1)
        stacked = ", ".join(("half * " if n.target in halved else "")
                            + f"np.vstack([{n.weight}.T, {n.bias if n.bias else 'np.zeros(n_h, dtype)'}])" for n in z_nodes)
        if halved:
            src(f"# σ(z) = ½ tanh(z/2) + ½: the blocks of {', '.join(sorted(halved))} hold z/2, ½ folded into [W; b]", 1)
            src("half = dtype.type(0.5)", 1)
        src(f"Z = np.empty(({len(z_nodes)}, T, B, n_h), dtype)", 1)
        src(f"np.matmul(xs1, np.stack([{stacked}]), out=Z.reshape({len(z_nodes)}, T * B, n_h))", 1)
    src("# the other nodes backward reads, every step: filled one chunk of steps at a time", 1)
    for name in own:
        src(f"{name}_seq = np.empty((T, B, {size[name]}), dtype)", 1)
    src(f"# {s}_seq[0] = {s}(-1); {s}_seq[t + 1] holds b(t) = {b_text}, then {s}(t) after the scan", 1)
    src(f"{s}_seq = np.empty((T + 1, B, n_h), dtype)", 1)
    src(f"{s}_seq[0] = state0[{s!r}]", 1)
    src("# every other node, a chunk of steps at a time: (C, B, n) arrays that stay in the cache", 1)
    src("C = chunk_steps(T, B * n_h)", 1)
    src("for t0 in range(0, T, C):", 1)
    src("t1 = min(t0 + C, T)", 2)
    if readers.get(x, set()) - {n.target for n in z_nodes} or x in scan_args:  # x read in the chunk
        src(f"{x} = xs[t0:t1]", 2)
    for node in cell.nodes:
        if node.target == s:
            continue
        if node in z_nodes:
            if node.target in readers or node.target in scan_args:
                src(f"{node.target} = Z[{block[node.target]}, t0:t1]", 2)
            continue
        if isinstance(node, Affine):
            terms = " + ".join(f"{p} @ {blocks[(node.weight, p)]}.T" for p in node.parts)
            bias = f" + {node.bias}" if node.bias else ""
            src(f"# {node.target}(t) = {node.weight} [{', '.join(f'{p}(t)' for p in node.parts)}]"
                f"{' + ' + node.bias if node.bias else ''}", 2)
            if node.target in own:
                src(f"{node.target} = {node.target}_seq[t0:t1]", 2)
                src(f"{node.target}[...] = {terms}{bias}", 2)
            else:
                src(f"{node.target} = {terms}{bias}", 2)
            continue
        src(f"# {node.target}(t) = {text.doprint(node.expr)}", 2)
        if node.target in in_place and in_place[node.target] in halved:
            printer.runtime.add("sigmoid_of_half")
            z = in_place[node.target]
            src(f"{node.target} = sigmoid_of_half({z}, out=Z[{block[node.target]}, t0:t1])", 2)
        elif node.target in block:
            src(f"{node.target} = {_into(printer, node.expr, f'Z[{block[node.target]}, t0:t1]')}", 2)
        elif node.target in own:
            src(f"{node.target} = {node.target}_seq[t0:t1]", 2)
            src(_into(printer, node.expr, node.target), 2)
        else:
            src(f"{node.target} = {printer.doprint(node.expr)}", 2)
    src(f"# b(t) = {b_text}", 2)
    src(_into(printer, scan.b, f"{s}_seq[t0 + 1:t1 + 1]"), 2)
    src(f"# {s}(t) = a(t) ⊙ {s}(t-1) + b(t), a(t) = {a_text}: the chunk's steps by a blocked scan,", 2)
    src("# in place over b, from the state the previous chunk ended with", 2)
    src(f"linear_scan_into(np.broadcast_to({printer.doprint(scan.a)}, (t1 - t0, B, n_h)), {s}_seq[t0:t1 + 1])", 2)
    src(f"ys = {s}_seq[1:]", 1)
    src("ys.flags.writeable = False  # a view of the cache: writing into it would corrupt backward", 1)
    cached = "".join(f", {n!r}: " + (f"Z[{block[n]}]" if n in block else f"{n}_seq") for n in stored)
    src(f"cache = {{'cell': CACHE_OF, 'params': params, 'xs': xs, 'final': {{{s!r}: {s}_seq[T].copy()}}, "
        f"{s!r}: {s}_seq{cached}}}", 1)
    src("return ys, cache", 1)
    src()
    src()
    # -- backward
    src("def backward(")
    src("cache: dict[str, Any], dys: np.ndarray, dstate: dict[str, np.ndarray] | None = None", 1)
    src(") -> dict[str, np.ndarray]:")
    src('"""Gradients of L = Σ_t ⟨dys(t), ys(t)⟩ + ⟨dstate[s], s(T)⟩.', 1)
    src("", 1)
    src(f"Returns the gradient of every parameter (same keys), of ``xs`` and of the initial state (``{s}0``).", 1)
    src('"""', 1)
    src("if not isinstance(cache, dict) or 'final' not in cache or 'params' not in cache:", 1)
    src('raise ValueError("cache: expected the cache returned by forward(), got " + type(cache).__name__)', 2)
    src("if cache.get('cell') != CACHE_OF:", 1)
    src("raise ValueError(f\"cache: expected the cache of {CACHE_OF}.forward(), got one from {cache.get('cell')}.forward()\")", 2)
    src("params, xs = cache['params'], cache['xs']", 1)
    src("T, B, n_x = xs.shape", 1)
    src("dtype = xs.dtype", 1)
    src(f"{s}_seq = cache[{s!r}]", 1)
    src(f"n_h = {s}_seq.shape[2]", 1)
    src("dys = check_sequence('dys', dys, (T, B, n_h), dtype, why=' like ys')", 1)
    src("dstate = check_states('dstate', dstate, STATES, (B, n_h), dtype)", 1)
    src(f"{', '.join(param_names)}{',' if len(param_names) == 1 else ''} = (params[k] for k in {param_names!r})", 1)
    for name in stored:
        src(f"{name}_seq = cache[{name!r}]", 1)
    # the δz of Z's nodes side by side, (C·B, G·n_h) per chunk: δx, the weights' and biases' gradients
    # in one GEMM or sum each, when δx is Σ_k W_kᵀ δz_k over exactly those nodes
    x_adj = next(a for a in steps if a.target == x)
    x_terms = sympy.Add.make_args(x_adj.expr.xreplace(seeds))
    d_of = {w.weight: w.d_affine for w in bw.weight_grads}  # δz of each weight's node (δh for h = z_h)
    dz = {d_of[n.weight]: k for k, n in enumerate(z_nodes)}
    stack = bool(z_nodes) and len(x_terms) == len(z_nodes) and all(isinstance(t, WeightT) for t in x_terms) \
        and {(t.weight, t.part, t.adjoint) for t in x_terms} == {(n.weight, x, d_of[n.weight]) for n in z_nodes}
    stack = stack and set(dz) <= {a.symbol for a in steps}  # every slot written by an adjoint
    weight_k = {n.weight: k for k, n in enumerate(z_nodes)} if stack else {}
    bias_k = {n.bias: k for k, n in enumerate(z_nodes) if n.bias} if stack else {}
    G = len(z_nodes)
    src("# the sums over time, accumulated chunk by chunk", 1)
    src("d_xs = np.empty((T, B, n_x), dtype)", 1)
    grads = []
    if stack:
        src(f"# dZ: δ{', δ'.join(n.target for n in z_nodes)} of a chunk side by side, for one GEMM each for δx and the δW", 1)
        src("C = chunk_steps(T, B * n_h)", 1)
        src(f"dZ = np.empty((C, B, {G}, n_h), dtype)", 1)
        src(f"W_x = np.concatenate([{', '.join(n.weight for n in z_nodes)}])  # ({G}·n_h, n_x)", 1)
        src(f"dW_x = np.zeros(({G} * n_h, n_x), dtype)", 1)
        src(f"dB = np.zeros(({G} * n_h,), dtype)", 1)
    for wg in bw.weight_grads:
        if wg.weight in weight_k and wg.d_affine in dz and wg.parts == (x,):
            k = weight_k[wg.weight]
            grads.append((wg.weight, f"dW_x[{k} * n_h:{k + 1} * n_h]"))
            continue
        src(f"d_{wg.weight} = np.zeros_like({wg.weight})", 1)
        grads.append((wg.weight, f"d_{wg.weight}"))
    for bg in bw.bias_grads:
        if bg.bias in bias_k and bg.d_affine in dz:
            k = bias_k[bg.bias]
            grads.append((bg.bias, f"dB[{k} * n_h:{k + 1} * n_h]"))
            continue
        src(f"d_{bg.bias} = np.zeros_like({bg.bias})", 1)
        grads.append((bg.bias, f"d_{bg.bias}"))
    for pg in bw.param_grads:
        src(f"d_{pg.param} = np.zeros_like({pg.param})", 1)
        grads.append((pg.param, f"d_{pg.param}"))
    src(f"# the derived backward step, a chunk of steps at a time from the last, with δ{s}(t) = g(t)", 1)
    if not stack:
        src("C = chunk_steps(T, B * n_h)", 1)
    src(f"g_next = dstate[{s!r}]  # the gradient on the chunk's last state from the steps after it", 1)
    src("for t1 in range(T, 0, -C):", 1)
    src("t0 = max(t1 - C, 0)", 2)
    for name in stored:
        src(f"{name} = {name}_seq[t0:t1]", 2)
    if s in read:
        src(f"{s} = {s}_seq[t0 + 1:t1 + 1]", 2)
    if s_prev in read:
        src(f"{s_prev} = {s}_seq[t0:t1]", 2)
    if x in read or stack:
        src(f"{x} = xs[t0:t1]", 2)
    src(f"# g(t), the whole gradient on {s}(t): g(t) = δy(t) + a(t+1) ⊙ g(t+1), by a reverse blocked scan", 2)
    src(f"a_chunk = np.broadcast_to({printer.doprint(scan.a)}, (t1 - t0, B, n_h))  # a(t) = {a_text}", 2)
    src("g_chunk = reverse_linear_scan(a_chunk, dys[t0:t1], g_next)", 2)
    src("if t0 > 0:", 2)
    src("g_next = a_chunk[0] * g_chunk[0]", 3)
    # common subexpressions of the adjoints (1/(Gf + Gi), …) computed once, each just before its first use
    # a(t), already evaluated for the reverse scan, wherever it appears (1 - Gu: one pass fewer)
    a_sub = {} if isinstance(scan.a, sympy.Symbol) else {scan.a: sympy.Symbol("a_chunk")}
    shared, reduced = sympy.cse([a.expr.xreplace(seeds).subs(a_sub) for a in steps],
                                symbols=sympy.numbered_symbols("shared"), optimizations="basic")
    pending = list(shared)
    for adj, expr in zip(steps, reduced):
        if stack and adj.target == x:
            continue  # δx: one GEMM below
        src(f"# δ{adj.target}(t) = {sympy.sstr(adj.expr.xreplace(seeds))}", 2)
        needed = set(expr.free_symbols)
        for k in range(len(pending) - 1, -1, -1):  # the shared values this one reads, and theirs
            if pending[k][0] in needed:
                needed |= pending[k][1].free_symbols
        for name, value in [p for p in pending if p[0] in needed]:
            src(f"{name} = {printer.doprint(value)}", 2)
        pending = [p for p in pending if p[0] not in needed]
        if stack and adj.symbol in dz:
            src(f"{adj.symbol} = dZ[:t1 - t0, :, {dz[adj.symbol]}]", 2)
            src(_into(printer, expr, str(adj.symbol)), 2)
        else:
            src(f"{adj.symbol} = {printer.doprint(expr)}", 2)
    if stack:
        src(f"dZ_t = dZ[:t1 - t0].reshape(-1, {G} * n_h)", 2)
        src(f"# δx(t) = {sympy.sstr(x_adj.expr)}: one GEMM", 2)
        src("np.matmul(dZ_t, W_x, out=d_xs[t0:t1].reshape(-1, n_x))", 2)
        src(f"# δW = Σ_t δz(t) [x(t)]ᵀ, δb = Σ_t δz(t), for {', '.join(n.target for n in z_nodes)} at once", 2)
        src(f"dW_x += dZ_t.T @ {x}.reshape(-1, n_x)", 2)
        src("dB += dZ_t.sum(axis=0)", 2)
    else:
        src(f"d_xs[t0:t1] = d_{x}", 2)
    src("if t0 == 0:", 2)
    src(f"# δ{s}(-1) = {sympy.sstr(gradient_in.expr.xreplace(seeds))} at the first step", 3)
    src(f"{gradient_in.symbol}0 = np.broadcast_to({printer.doprint(gradient_in.expr.xreplace(seeds).subs(a_sub))}, "
        "(t1 - t0, B, n_h))[0].copy()", 3)
    for wg in bw.weight_grads:
        if wg.weight in weight_k and wg.d_affine in dz and wg.parts == (x,):
            continue
        parts = list(wg.parts)
        stacked = parts[0] if len(parts) == 1 else f"np.concatenate([{', '.join(parts)}], axis=-1)"
        src(f"# δ{wg.weight} = Σ_t δz(t) [{', '.join(f'{p}(t)' for p in wg.parts)}]ᵀ", 2)
        src(f"d_{wg.weight} += {printer.doprint(wg.d_affine)}.reshape(-1, n_h).T @ {stacked}.reshape(-1, {wg.weight}.shape[1])", 2)
    for bg in bw.bias_grads:
        if bg.bias in bias_k and bg.d_affine in dz:
            continue
        src(f"d_{bg.bias} += {printer.doprint(bg.d_affine)}.sum(axis=(0, 1))", 2)
    for pg in bw.param_grads:
        src(f"d_{pg.param} += np.broadcast_to({printer.doprint(pg.expr.xreplace(seeds))}, (t1 - t0, B, n_h)).sum(axis=(0, 1))", 2)
    order = {name: k for k, name in enumerate(cell.params)}
    grads.sort(key=lambda g: order[g[0]])
    out = ", ".join(f"{k!r}: {v}" for k, v in grads)
    src(f"return {{{out}, 'xs': d_xs, {s + '0'!r}: {gradient_in.symbol}0}}", 1)
    body = "\n".join(lines) + "\n"
    calls = sorted(printer.runtime | {"check_params", "check_sequence", "check_states", "init_uniform"})
    return body.replace(_RUNTIME, f"from derive.runtime import {', '.join(calls)}")


def compile(cell: Cell):  # noqa: A001 - the verb users look for
    """``cell``'s scan kernel as a module object built in memory."""
    import builtins
    from types import ModuleType

    source = generate(cell)
    module = ModuleType(f"derive_scan_kernel_{cell.name}", f"Generated scan kernel of {cell.title}.")
    module.__file__ = f"<derive scan kernel of {cell.source}>"
    builtins.exec(builtins.compile(source, module.__file__, "exec"), module.__dict__)  # our generated code
    return module


