"""Generate a cell's Numba kernel (``derive/kernels/numba/<cell>.py``) from
its kernel plan (:mod:`derive.render.plan`), the plan the NumPy printer
prints too.

Same contract as the NumPy kernel (``init_params``, ``forward``,
``backward``, the same validation and errors, the same cache keys), same
arrays (``Z`` and ``dZ`` as ``(k, T, B, n_h)`` blocks, the caches as
``(T or T + 1, B, n_h)``). Only ``cache['params']`` differs: there it
holds the weights in the layouts forward multiplied by (transposed and
stacked copies, see :func:`_prepared`), from which backward takes its own
by transposing back, instead of a copy of every parameter and a second
layout of them (4.5 µs of the small float32 LSTM's 97 in a training loop).
What changes is how a step runs:

* the step loop is an ``@numba.njit(cache=True, error_model='numpy')``
  function, compiled once per dtype and cached on disk;
* each GEMM of the plan is one BLAS product per block on 2-D contiguous
  arrays (the runtime's ``dot``/``dot_add``): forward, added straight into
  the block of Z it feeds (which holds the x(t) part and the bias already);
  backward, a state's gradient summed over its blocks;
* the element-wise statements between two GEMMs are fused into one loop
  over the B·n_h values of the step (flat views of the (B, n_h) arrays,
  indexed by the bare loop variable, so that LLVM vectorises it whatever
  n_h), each statement printed on one scalar under the equation it
  computes; a per-element parameter is tiled to B·n_h values before the
  loop, and its gradient summed over the batch after it;
* the input parts of every step and the biases are one compiled call
  before the forward loop (:func:`derive.runtime_numba.project`); δx, the
  weight and the bias gradients a few after the backward one
  (``input_gradient``, ``weight_gradient``, ``block_sums``; see
  ``_emit_after_loop``). The bias gradients are not summed in the backward
  loop: each sum there is one more store per element, and with the LSTM's
  LLVM gave up vectorising the loop;
* σ and tanh are :mod:`derive.runtime_numba`'s, which vectorise (Numba's
  own ``np.tanh`` is a scalar C-library call); σ is computed on z itself,
  so the σ blocks are not halved as the NumPy kernel's are;
* every number in a statement is a typed constant (``one``) of the arrays'
  dtype: a Python float literal would turn float32 code into float64.

The Python functions around the compiled loops check the input exactly as
the NumPy kernel does (the runtime's ``check_*``) and prepare the weights
(transposed, stacked, contiguous) with NumPy. Compiled code raises no
floating-point warning: ``backward`` checks δz (through the sums of its
blocks) and the carried gradients, from which every other gradient is
computed, and warns as NumPy would. That check also catches an inf or a NaN
in dys, whose every value the loop reads: only then are dys's values
checked, for the NumPy kernel's error, rather than in a pass of their own
before the loop.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sympy

from .. import functions
from ..cell import Cell
from ..derivation import OUTPUT_GRAD
from .numpy_kernel import COMMAND, KernelPrinter, _emit_backward_head, _emit_constants_and_init, _emit_input_checks, _emit_part_steps, _slice, _Source
from .plan import (
    ActivationRun, AdjointGemm, AdjointStatement, Assign, Destination, Folded, Function, KernelPlan, NodeGemm,
    ParamGrad, Slot, StateAdjointGemm, StateGemm, plan_kernel,
)
from .text import CellTextPrinter

_JIT = "@numba.njit(cache=True, error_model='numpy')"
_CONSTANT_NAMES = {sympy.Integer(0): "zero", sympy.Integer(1): "one", sympy.Integer(2): "two",
                   sympy.Rational(1, 2): "half"}
_RUNTIME = ("sigmoid", "tanh", "relu", "softplus", "hard_sigmoid", "step", "inside01")


class ScalarPrinter(KernelPrinter):
    """One element of a fused loop: a symbol is the scalar it is bound to,
    every activation the registry's Numba spelling, every number a typed
    constant named in ``constants`` (defined at the top of the function)."""

    def __init__(self) -> None:
        super().__init__({})
        self.constants: dict[sympy.Number, str] = {}

    def constant(self, value: sympy.Number) -> str:
        if value < 0:
            return f"-{self.constant(-value)}"
        if value not in self.constants:
            name = _CONSTANT_NAMES.get(value)
            if name is None:
                p, q = sympy.fraction(value) if value.is_Rational else (value, 1)
                name = f"k_{str(p).replace('.', '_')}" + (f"_{q}" if q != 1 else "")
            self.constants[value] = name
        return self.constants[value]

    def _print_Integer(self, expr: sympy.Integer) -> str:
        return self.constant(expr)

    _print_Zero = _print_One = _print_NegativeOne = _print_Rational = _print_Half = _print_Integer

    def _print_Float(self, expr: sympy.Float) -> str:
        return self.constant(expr)

    def _print_activation(self, entry: functions.Activation, expr: sympy.Function) -> str:
        return entry.numba.format(self._print(expr.args[0]))

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exp = expr.args
        b = self._print(base) if isinstance(base, sympy.Symbol) else f"({self._print(base)})"
        if exp.is_Integer and 2 <= exp <= 4:  # h*h: multiplies, dtype kept
            return "*".join([b] * int(exp))
        if exp.is_Integer and -4 <= exp <= -1:  # one/(h*h): Numba's ** on a float is a libm pow, which stops SIMD
            power = "*".join([b] * int(-exp))
            return f"{self.constant(sympy.Integer(1))}/" + (power if exp == -1 else f"({power})")
        return f"{b}**{self._print(exp)}"

    def typed(self, dtype: str) -> list[str]:
        """The lines defining the constants used, in ``dtype``."""
        lines = []
        for value, name in sorted(self.constants.items(), key=lambda kv: kv[1]):
            if value.is_Rational and value.q != 1:
                lines.append(f"{name} = {dtype}({value.p}) / {dtype}({value.q})")
            else:
                lines.append(f"{name} = {dtype}({value})")
        return lines


functions.install_printers(ScalarPrinter, ScalarPrinter._print_activation)


class _Missing(Exception):
    """A local of an earlier group is read: it needs a per-step buffer (printing restarts)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Step:
    """The body of a step loop being printed: GEMM lines, and the element-wise
    statements between them gathered in a *group*, printed as one loop over
    the batch rows b (the row views) around one over the elements j."""

    def __init__(self, kernel: KernelPlan, buffered: set[str]) -> None:
        self.plan = kernel
        self.cell = kernel.cell
        self.seq = {c.name: f"{c.name}_seq" for c in kernel.cached}
        self.block_of = {c.name: c.block for c in kernel.cached}
        self.printer = ScalarPrinter()
        self.text = CellTextPrinter(kernel.cell)
        self.lines: list[str] = []
        self.comments: list[str] = []  # above the next GEMM
        self.rows: dict[str, str] = {}  # row view -> its array at (t, b), in the group
        self.body: list[str] = []
        self.scalars: set[str] = set()  # bound in the group's inner loop
        self.where: dict[str, str] = {}  # name -> its (B, n_h) array at step t, for a later group
        self.earlier: set[str] = set()  # locals of earlier groups (not in an array)
        self.buffered = buffered  # locals a later group reads: stored in name_buf
        self.buffers: list[str] = []  # before the time loop: per-step (B, n_h) arrays, tiled parameters
        self.after: list[str] = []  # after the time loop
        self.tiled: set[str] = set()  # per-element parameters read: tiled to (B·n_h,) before the loop
        self.read: set[str] = set()  # the names a loop reads from an array
        # the names a loop may bind: a flat view never takes one (a vector "h_t" beside "h")
        self.in_use = {n for v in (*kernel.cell.vectors, *kernel.cell.params) for n in (v, f"d_{v}")}
        for p in kernel.per_element:
            self.where[p] = ""

    # -- groups
    def note(self, text: str) -> None:
        self.body.append(f"# {text}")

    def gemm(self, text: str) -> None:
        self.close()
        for c in self.comments:
            self.lines.append(f"        # {c}")
        self.comments = []
        self.lines.append(f"        {text}")

    def close(self) -> None:
        """Print the group gathered so far as its loops."""
        if not self.body:
            return
        self.before_close()
        for name in self.scalars:
            if name not in self.where:
                self.earlier.add(name)
        for row, array in self.rows.items():
            self.lines.append(f"        {row} = flat({array})")
        self.lines.append("        for j in range(B * n_h):")
        self.lines += ["            " + line for line in self.body]
        self.rows, self.body, self.scalars = {}, [], set()

    def before_close(self) -> None:
        pass

    def row(self, name: str, array: str) -> str:
        """The flat view of ``array`` (a (B, n_h) array at step t) in the
        group, named ``name`` unless the group already has one."""
        for existing, a in self.rows.items():
            if a == array:
                return existing
        while name in self.rows or name in self.scalars or name in self.in_use:
            name = f"{name}_"
        self.rows[name] = array
        return name

    # -- values
    def define(self, name: str, value: str, comment: str = "") -> None:
        self.body.append(f"{name} = {value}" + (f"  # {comment}" if comment else ""))
        self.scalars.add(name)
        if name in self.buffered:
            self.store(name, f"{name}_buf")
            self.where[name] = f"{name}_buf"

    def store(self, name: str, array: str, row: str | None = None) -> None:
        """Write the scalar ``name`` into ``array`` (at step t), through a flat view named ``row``."""
        row = self.row(row or _row_name(array), array)
        self.body.append(f"{row}[j] = {name}")

    def load(self, name: str) -> str:
        """``name`` as a scalar of the group (read from its row the first time)."""
        if name in self.scalars:
            return name
        if name in self.plan.per_element:
            if name not in self.tiled:
                self.tiled.add(name)
                self.buffers.append(f"{name} = tile_rows({name}, B)  # one per element of a step's (B, n_h) arrays")
            return f"{name}[j]"
        array = self.locate(name)
        self.read.add(name)
        row = self.row(f"{name}_t", array)
        self.body.append(f"{name} = {row}[j]")
        self.scalars.add(name)
        return name

    def locate(self, name: str) -> str:
        if name in self.where:
            return self.where[name]
        if name in self.earlier:
            raise _Missing(name)
        raise KeyError(f"the Numba printer found no array holding {name!r} in the step of {self.cell.name}")

    def print(self, e: sympy.Expr) -> str:
        """``e`` over scalars of the group, loading what it reads."""
        names = {}
        for s in sorted(e.free_symbols, key=lambda s: s.name):
            names[s.name] = self.load(s.name)
        self.printer.names = names
        return self.printer.doprint(e)

    def slot(self, slot: Slot) -> str:
        at = f"t + {slot.offset}" if slot.offset else "t"
        block = self.block_of.get(slot.name)
        return f"Z[{block}, {at}]" if block is not None else f"{self.seq[slot.name]}[{at}]"


def _row_name(array: str) -> str:
    """A name for the flat view of ``array``: ``Z[1, t]`` -> ``Z1_t``, ``c_seq[t + 1]``
    -> ``c_next_t``, ``c_seq[t]`` -> ``c_t``, ``d_c_next`` -> ``d_c_next_t``."""
    base, _, index = array.partition("[")
    if base in ("Z", "dZ"):
        return f"{base}{index.split(',', 1)[0]}_t"
    if base.endswith("_seq"):
        return f"{base[:-4]}{'_next' if '+' in index else ''}_t"
    return f"{base}_t"


class _Forward(_Step):
    """The forward step: state GEMMs, activations, node GEMMs, assignments.
    Every GEMM adds its product into its block of Z (beta = 1), which holds
    the x(t) part and the bias already: the loops read each block whole."""

    def __init__(self, kernel: KernelPlan, buffered: set[str]) -> None:
        super().__init__(kernel, buffered)
        for s in self.cell.states:
            self.where[s.prev] = f"{self.seq[s.name]}[t]"
        self.value: dict[int, str] = {}  # block -> the scalar holding it in the group
        for b in kernel.blocks:
            self.where.setdefault(b.node, f"Z[{b.index}, t]")

    def before_close(self) -> None:
        self.value.clear()

    def block(self, i: int) -> str:
        """Block i's value as a scalar, read from its Z row."""
        if i in self.value:
            return self.value[i]
        name = self.plan.blocks[i].node
        self.body.append(f"{name} = {self.row(f'{name}_t', f'Z[{i}, t]')}[j]")
        self.scalars.add(name)
        self.value[i] = name
        return name

    def load(self, name: str) -> str:
        block = next((b.index for b in self.plan.blocks if b.node == name), None)
        if block is not None and name not in self.scalars:
            return self.block(block)
        return super().load(name)

    def emit(self) -> list[str]:
        step = {StateGemm: self.state_gemm, ActivationRun: self.activation_run, NodeGemm: self.node_gemm,
                Assign: self.assign}
        for statement in self.plan.forward:
            step[type(statement)](statement)
        self.close()
        return self.lines

    def state_gemm(self, st: StateGemm) -> None:
        sw, s = st.weights, st.weights.state
        self.comments += st.equations
        others = "the x(t) parts and biases are in Z" if sw.with_input else "the biases are in Z"
        self.comments.append(f"({others}; add the {self.text.doprint(sympy.Symbol(s))} parts)")
        state = next(x.name for x in self.cell.states if x.prev == s)
        for r, i in enumerate(sw.blocks):
            weight = f"W_{s}[{r}]" if len(sw.blocks) > 1 else f"W_{s}"
            self.gemm(f"dot_add({self.seq[state]}[t], {weight}, Z[{i}, t])")

    def activation_run(self, run: ActivationRun) -> None:
        fn = "sigmoid" if run.function is Function.SIGMOID else "tanh"
        equations = list(run.equations) if len(run.equations) == len(run.targets) else [None] * len(run.targets)
        if len(run.equations) != len(run.targets):
            for e in run.equations:
                self.note(e)
        for i, target, eq in zip(range(*run.blocks), run.targets, equations):
            if eq:
                self.note(eq)
            z = self.block(i)
            self.define(target, f"{fn}({z})")
            self.store(target, f"Z[{i}, t]")
            self.value[i] = target
            self.where[target] = f"Z[{i}, t]"

    def node_gemm(self, st: NodeGemm) -> None:
        if st.weights:
            if st.equation is not None:
                self.comments.append(st.equation)
            for w in st.weights:
                self.close()
                self.gemm(f"dot_add({self.locate(w.part)}, {w.weight}T, Z[{st.block}, t])")
        elif st.equation is not None:
            self.note(f"{st.equation} (before the loop)")
        if st.named:
            value = self.block(st.block)
            if value != st.node:
                self.define(st.node, value)

    def assign(self, st: Assign) -> None:
        self.note(st.equation)
        for q in st.kept:
            self.define(q.name, self.print(q.expr), "kept for backward")
            self.keep(q.name, Slot(q.name, 0))
        if st.mix:
            g, v, u = (self.print(x) for x in (st.mix.g, st.mix.v, st.mix.u))
            self.note(f"as {st.mix.text}")
            if st.mix.kept:
                self.define(st.mix.kept, f"({v} - {u})*{g}", "kept for backward")
                self.keep(st.mix.kept, Slot(st.mix.kept, 0))
                self.define(st.target, f"{u} + {st.mix.kept}")
            else:
                self.define(st.target, f"{u} + ({v} - {u})*{g}")
        else:
            self.define(st.target, self.print(st.expr))
        if st.destination is not None:
            self.keep(st.target, st.destination)

    def keep(self, name: str, slot: Slot) -> None:
        array = self.slot(slot)
        self.store(name, array)
        self.where[name] = array


class _Backward(_Step):
    """The backward step: adjoints, their GEMMs, per-element parameter gradients."""

    def __init__(self, kernel: KernelPlan, buffered: set[str]) -> None:
        super().__init__(kernel, buffered)
        self.where[OUTPUT_GRAD] = "dys[t]"
        for ld in kernel.backward_loads:
            self.where[ld.name] = self.slot(Slot(ld.cached, ld.offset))
        self.carry_array = {c.name: f"carried_{c.state}" for c in kernel.carried}  # (B, n_h), in place
        for c in kernel.carried:
            self.where[c.name] = f"carried_{c.state}"
        self.dz: dict[str, int] = {}

    def slot(self, slot: Slot) -> str:
        at = f"t + {slot.offset}" if slot.offset else "t"
        return f"{self.seq[slot.name]}[{at}]"

    def emit(self) -> list[str]:
        step = {ParamGrad: self.param_grad, Folded: self.folded, AdjointStatement: self.adjoint_statement}
        deferred = []
        for statement in self.plan.backward:
            if self.last_gemm(statement):
                deferred.append(statement)  # read by nothing after it: one element-wise group less
            else:
                step[type(statement)](statement)
        for statement in deferred:
            step[type(statement)](statement)
        self.close()
        return self.lines

    @staticmethod
    def last_gemm(st: object) -> bool:
        """A GEMM written straight into a carried gradient: no later statement of the step reads it."""
        return isinstance(st, AdjointStatement) and st.expr is None and st.destination is Destination.CARRY

    def param_grad(self, g: ParamGrad) -> None:
        self.note(g.equation)
        self.buffers.append(f"d_{g.param}_rows = np.zeros(B * n_h, dtype)")
        self.after.append(f"sum_rows(d_{g.param}_rows, d_{g.param})  # Σ_batch")
        self.body.append(f"d_{g.param}_rows[j] += {self.print(g.expr)}")

    def folded(self, f: Folded) -> None:
        self.note(f"{f.equation} (computed within {f.into})")

    def run_gemm(self, gemm: StateAdjointGemm | AdjointGemm, out: str) -> None:
        self.close()
        if isinstance(gemm, AdjointGemm):
            self.gemm(f"dot({self.locate(gemm.adjoint)}, {gemm.weight}, {out})")
            return
        # one product per block, added up: a stacked copy of the blocks for one product
        # would be more stores in the loop, and LLVM then gave up vectorising the LSTM's
        sw, s = gemm.weights, gemm.weights.state
        for r, i in enumerate(sw.blocks):
            rows = f"W_{s}T" if len(sw.blocks) == 1 else f"W_{s}T[{r} * n_h:{r + 1} * n_h]"
            self.gemm(f"{'dot_add' if r else 'dot'}(dZ[{i}, t], {rows}, {out})")

    def adjoint_statement(self, a: AdjointStatement) -> None:
        if a.expr is None:  # the value is the one GEMM's result
            self.comments.append(a.equation)
            gemm = a.gemms[0]
            out = self.carry_array[a.carry] if a.destination is Destination.CARRY else f"{gemm.output}_out"
            if a.destination is not Destination.CARRY:
                self.buffers.append(f"{out} = np.empty((B, n_h), dtype)")
            self.run_gemm(gemm, out)
            if a.destination is Destination.CARRY:
                return
            self.where[a.target] = out
            if a.destination is Destination.LOCAL:
                return
            self.note(a.equation)
            value = self.load(a.target)
        else:
            for gemm in a.gemms:
                out = f"{gemm.output}_out"
                self.buffers.append(f"{out} = np.empty((B, n_h), dtype)")
                self.comments.append(f"({gemm.output}: for {a.equation.split(' = ', 1)[0]})")
                self.run_gemm(gemm, out)
                self.where[gemm.output] = out
            self.note(a.equation)
            for name, text in a.reused:
                self.note(f"(with {name} = {text}, from the forward pass)")
            for v in a.shared:
                self.define(v.name.name, self.print(v.value), f"shared: {v.text}")
            value = self.print(a.expr)
        if a.destination is Destination.DZ:
            if value != a.target:
                self.define(a.target, value)
            for i in a.slots:
                self.store(a.target, f"dZ[{i}, t]", f"{a.target}_t" if i == a.slots[0] else None)
            self.where[a.target] = f"dZ[{a.slots[0]}, t]"
            self.dz[a.target] = a.slots[0]
        elif a.destination is Destination.CARRY:
            self.store(value if _is_name(value) else self._bind(a.target, value), self.carry_array[a.carry])
        else:
            self.define(a.target, value)

    def _bind(self, name: str, value: str) -> str:
        self.define(name, value)
        return name


def _is_name(text: str) -> bool:
    return text.isidentifier()


def _generate_step(cls: type[_Step], kernel: KernelPlan) -> _Step:
    """Print a step, again with per-step buffers for the locals a later group reads."""
    buffered: set[str] = set()
    while True:
        step = cls(kernel, buffered)
        try:
            step.emit()
        except _Missing as missing:
            if missing.name in buffered:
                raise
            buffered = buffered | {missing.name}
            continue
        step.buffers += [f"{name}_buf = np.empty((B, n_h), dtype)" for name in sorted(buffered)]
        return step


def runtime_digest() -> str:
    """The first 16 hex digits of the SHA-256 of ``derive/runtime_numba.py``:
    Numba invalidates a cached function when its own file changes, not when a
    function it calls does, so each kernel names the runtime it was made with."""
    runtime = Path(__file__).resolve().parent.parent / "runtime_numba.py"
    return "sha256:" + hashlib.sha256(runtime.read_bytes()).hexdigest()[:16]


def generate(cell: Cell, command: str | None = None) -> str:
    """The source of ``derive/kernels/numba/<cell>.py``; ``command`` is the
    one its header names as the way to regenerate it (``derive build``)."""
    kernel = plan_kernel(cell)
    src = _Source()
    command = command or COMMAND
    src(f"# Generated by `{command}` from the equations of {cell.source}: do not edit.")
    src(f"# Change the cell and run `{command}`; `derive check` fails while this file is stale.")
    src(f"# Compiled with derive/runtime_numba.py {runtime_digest()} (Numba's cache sees only this file: a new runtime")
    src("# changes this line, so the compiled code cached beside this file is not reused).")
    src('"""' + f"{cell.title}: forward and backward (BPTT) kernels compiled with Numba, derived from its equations.")
    src()
    src("Forward step:")
    for eq in kernel.equations:
        src(f"    {eq}")
    src()
    src("Same contract as the NumPy kernel (derive/kernels/" + cell.name + ".py): time-major shapes, xs")
    src("(T, B, n_x), ys (T, B, n_h), a vector of the equations a (B, n) array. Each step")
    src("runs in a compiled loop: one np.dot per GEMM, and the element-wise statements")
    src("between two GEMMs fused into one loop over the batch rows b and the elements j.")
    src("Needs Numba: pip install -e \".[fast]\".")
    src('"""')
    src()
    src("from __future__ import annotations")
    src()
    src("import warnings")
    src("from typing import Any")
    src()
    src("import numba")
    src("import numpy as np")
    src()
    src("from derive.runtime import as_arrays, check_params, check_sequence, check_states, init_uniform")
    runtime_at = len(src.lines)
    src("# <runtime_numba import>")
    src()
    _emit_constants_and_init(src, cell)
    forward = _generate_step(_Forward, kernel)
    backward = _generate_step(_Backward, kernel)
    _emit_forward(src, kernel, forward)
    _emit_backward(src, kernel, backward)
    body = src.text()
    used = [f for f in _RUNTIME if f"{f}(" in body.split("\n# <runtime_numba import>", 1)[-1]]
    used += [f for f in ("all_finite", "block_sums", "dot", "dot_add", "flat", "input_gradient", "project", "sum_rows",
                         "tile_rows", "weight_gradient") if f"{f}(" in body]
    line = f"from derive.runtime_numba import {', '.join(sorted(used))}" if used else ""
    lines = body.split("\n")
    lines[runtime_at] = line
    return "\n".join(lines)


def _params(src: _Source, kernel: KernelPlan) -> None:
    names = list(kernel.cell.params)
    src(f"{', '.join(names)} = {', '.join(f'params[{n!r}]' for n in names)}", 1)
    src("# column blocks: a weight on a concatenation is [W_c, W_x] on [c(t-1), x(t)]", 1)
    by_weight: dict[str, list] = {}
    for c in kernel.columns:
        by_weight.setdefault(c.weight, []).append(c)
    for weight, cols in by_weight.items():
        src(f"{', '.join(c.name for c in cols)} = {', '.join(f'{weight}[:, {_slice(c.columns)}]' for c in cols)}", 1)


def _prepared(kernel: KernelPlan) -> list[str]:
    """The arrays ``forward`` lays the parameters out in, which its cache
    keeps for ``backward`` under ``'params'``: the input blocks transposed
    and stacked (``W_x``), the blocks acting on each state (``W_<state>``),
    the blocks on a node's value transposed (``<weight>T``), and the
    per-element parameters."""
    names = ["W_x", *(f"W_{sw.state}" for sw in kernel.state_weights), *(f"{nw.weight}T" for nw in kernel.node_weights),
             *kernel.per_element]
    return list(dict.fromkeys(names))


def _constants(step: _Step, anchor: str) -> list[str]:
    return step.printer.typed(f"{anchor}.dtype.type")


def _emit_steps_function(src: _Source, name: str, args: list[str], step: _Step, blocks: str, steps: str,
                         doc: list[str]) -> None:
    """A compiled time loop: its signature, docstring, typed constants and
    buffers, then the step's lines under ``for t in <steps>``; ``blocks`` is
    the (k, T, B, n_h) array whose shape and dtype it reads."""
    lines = [f"def {name}({', '.join(args)}):  # noqa: ANN001, ANN202 - compiled by Numba"]
    lines += ["    " + line for line in doc]
    lines += [f"    _, T, B, n_h = {blocks}.shape", f"    dtype = {blocks}.dtype"]
    lines += ["    " + line for line in _constants(step, blocks)]
    lines += ["    " + line for line in dict.fromkeys(step.buffers)]
    lines += [f"    for t in {steps}:", *step.lines]
    lines += ["    " + line for line in dict.fromkeys(step.after)]
    src(_JIT)
    for line in lines:
        src(line)


def _emit_forward(src: _Source, kernel: KernelPlan, step: _Forward) -> None:
    cell, k = kernel.cell, len(kernel.blocks)
    seq = step.seq
    own = [c for c in kernel.cached if c.block is None]
    weights = [f"W_{sw.state}" for sw in kernel.state_weights] + [f"{nw.weight}T" for nw in kernel.node_weights]
    weights = list(dict.fromkeys(weights))
    args = ["Z", *(seq[c.name] for c in own), *weights, *kernel.per_element]
    # the compiled step loop
    _emit_steps_function(src, "_forward_steps", args, step, "Z", "range(T)",
                         ['"""The time loop of ``forward``: fills Z (the gates in place) and the caches."""'])
    src()
    src()
    state_of = [s.name for s in cell.states]
    src("def forward(")
    src("params: dict[str, np.ndarray], xs: np.ndarray, state0: dict[str, np.ndarray] | None = None", 1)
    src(") -> tuple[np.ndarray, dict[str, Any]]:")
    src(f'"""Run the cell over ``xs`` (T, B, n_x) from ``state0`` ({", ".join(f"{s!r}: (B, n_h)" for s in state_of)}; zeros if None).', 1)
    src("", 1)
    src(f"Returns ``ys`` (T, B, n_h), the output {cell.output}(t) of every step (read-only), and the", 1)
    src("cache ``backward`` needs; ``cache['final']`` holds the final states.", 1)
    src('"""', 1)
    _emit_input_checks(src, zeros_later=True)
    src("# (in C order: the products and the loops read them so, whatever order the caller's arrays are in);", 1)
    src("# the weights: in the layouts of the products, below", 1)
    src("xs = np.array(xs, order='C')", 1)
    src("params = as_arrays(params, PARAM_SHAPES)  # the caller's arrays, read once below", 1)
    _params(src, kernel)
    for p in kernel.per_element:
        src(f"{p} = np.array({p}, order='C')", 1)
    src()
    src(f"# Z: the pre-activation of every affine node, one (T, B, n_h) block each: {', '.join(kernel.block_names)}.", 1)
    if any(b.activation for b in kernel.blocks):
        src("# A σ or tanh whose argument feeds nothing else overwrites that block in place: Z is then its gate's cache.", 1)
    src(f"Z = np.empty(({k}, T, B, n_h), dtype)", 1)
    for c in sorted((c for c in kernel.cached if c.block is not None), key=lambda c: c.block):
        src(f"{seq[c.name]} = Z[{c.block}]", 1)
    for c in own:
        src(f"{seq[c.name]} = np.empty(({'T + 1' if c.state else 'T'}, B, n_h), dtype)", 1)
    for s in cell.states:
        src(f"{seq[s.name]}[0] = 0 if state0 is None else state0[{s.name!r}]", 1)
    projection = kernel.input_projection
    src("# the input parts of every step at once, one GEMM per block, and the biases (one compiled call)", 1)
    if projection.blocks:
        src(f"W_x = np.array([{', '.join(f'{b.x_weight}.T' for b in projection.blocks)}])", 1)
    else:
        src("W_x = np.empty((0, n_x, n_h), dtype)  # no block takes x(t)", 1)
    if any(b.bias for b in kernel.blocks):
        src(f"biases = np.array([{', '.join(b.bias or 'np.zeros(n_h, dtype)' for b in kernel.blocks)}])", 1)
    else:
        src("biases = np.empty((0, n_h), dtype)  # none", 1)
    src(f"project(xs.reshape(T * B, n_x), W_x, biases, Z.reshape({k}, T * B, n_h))", 1)
    for sw in kernel.state_weights:
        state = CellTextPrinter(cell).doprint(sympy.Symbol(sw.state))
        if len(sw.weights) == 1:
            src(f"# the block acting on {state}: one GEMM per step", 1)
            src(f"W_{sw.state} = {sw.weights[0]}.T.copy()", 1)
        else:
            src(f"# the blocks acting on {state}, stacked: one GEMM per block and step, added into its block of Z", 1)
            src(f"W_{sw.state} = np.array([{', '.join(w + '.T' for w in sw.weights)}])", 1)
    for nw in dict.fromkeys(f"{nw.weight}T = np.array({nw.weight}.T, order='C')" for nw in kernel.node_weights):
        src(nw, 1)
    src(f"_forward_steps({', '.join(args)})", 1)
    src()
    out = seq[cell.output]
    src(f"ys = {out}[1:]" if cell.output in state_of else f"ys = {out}", 1)
    src("ys.setflags(write=False)  # a view of the cache: writing into it would corrupt backward", 1)
    finals = ", ".join(f"{s!r}: {seq[s]}[T].copy()" for s in state_of)
    entries = ", ".join(f"{n!r}: {a}" for n, a in seq.items())
    prepared = ", ".join(f"{n!r}: {n}" for n in _prepared(kernel))
    src("# the parameters as forward used them, in the layouts above (copies): what backward reads of them", 1)
    src(f"cache = {{'cell': CELL, 'params': {{{prepared}}}, 'xs': xs, 'final': {{{finals}}}, {entries}}}", 1)
    src("return ys, cache", 1)
    src()
    src()


def _emit_backward(src: _Source, kernel: KernelPlan, step: _Backward) -> None:
    cell, k = kernel.cell, len(kernel.blocks)
    seq = step.seq
    state_of = [s.name for s in cell.states]
    gemm_weights = []
    for st in kernel.backward:
        if isinstance(st, AdjointStatement):
            for g in st.gemms:
                gemm_weights.append(f"W_{g.weights.state}T" if isinstance(g, StateAdjointGemm) else g.weight)
    gemm_weights = list(dict.fromkeys(gemm_weights))
    carried = [f"carried_{c.state}" for c in kernel.carried]
    d_params = [f"d_{p}" for p in kernel.param_grads]
    args = ["dZ", "dys", *seq.values(), *carried, *gemm_weights, *kernel.per_element, *d_params]
    _emit_steps_function(src, "_backward_steps", args, step, "dZ", "range(T - 1, -1, -1)",
                         ['"""The time loop of ``backward``: fills dZ, the carried gradients and the per-element',
                          'parameters\' gradients."""'])
    src()
    src()
    _emit_backward_head(src, state_of, next(iter(seq)))
    # dys's values are checked after the loop, which reads every one of them: a full pass less
    late = OUTPUT_GRAD in step.read
    if late:
        src("# its values: after the loop (an inf or NaN in dys makes δz or a state's gradient so)", 1)
        src("dys = np.ascontiguousarray(check_sequence('dys', dys, (T, B, n_h), dtype, why=' like ys', finite=False))", 1)
    else:
        src("dys = np.ascontiguousarray(check_sequence('dys', dys, (T, B, n_h), dtype, why=' like ys'))", 1)
    src("if dstate is not None:  # None: zeros, the carried gradients' first values below", 1)
    src("dstate = check_states('dstate', dstate, STATES, (B, n_h), dtype)", 2)
    prepared = _prepared(kernel)
    src(f"# the weights as forward laid them out for its products (see forward): {', '.join(prepared)}", 1)
    src(f"{', '.join(prepared)} = {', '.join(f'params[{n!r}]' for n in prepared)}", 1)
    for name, array in seq.items():
        src(f"{array} = cache[{name!r}]", 1)
    src()
    # each block the products read, transposed back from forward's layout (C-contiguous: BLAS reads a strided one slower)
    by_state = {f"W_{sw.state}T": sw for sw in kernel.state_weights}
    node_weights = {nw.weight for nw in kernel.node_weights}
    for w in gemm_weights:
        if w in by_state:
            sw = by_state[w]
            src(f"# {', '.join(sw.weights)}: the blocks acting on {CellTextPrinter(cell).doprint(sympy.Symbol(sw.state))}", 1)
            src(f"{w} = np.ascontiguousarray(W_{sw.state}.transpose(0, 2, 1)).reshape({len(sw.weights)} * n_h, -1)"
                if len(sw.weights) > 1 else f"{w} = W_{sw.state}.T.copy()", 1)
        elif w in node_weights:
            src(f"{w} = {w}T.T.copy()", 1)
        else:
            raise ValueError(f"{cell.name}: backward multiplies by {w}, which forward does not lay out")
    src(f"# dZ: δz of every affine node at every step, one (T, B, n_h) block each: {', '.join(kernel.adjoint_names)}", 1)
    src(f"dZ = np.empty(({k}, T, B, n_h), dtype)", 1)
    for c in kernel.carried:
        src(f"# {c.text}: from dstate at the last step (a copy: the loop writes into it)", 1)
        src(f"{c.name} = np.zeros((B, n_h), dtype) if dstate is None else np.array(dstate[{c.state!r}], dtype, order='C')"
            "  # C order: the loop reads it flat", 1)
    for param in kernel.param_grads:
        src(f"d_{param} = np.empty(n_h, dtype)  # summed over the batch by the loop's end", 1)
    call_args = [a if a not in kernel.per_element else f"params[{a!r}]" for a in args]
    call_args = [next((c.name for c in kernel.carried if a == f"carried_{c.state}"), a) for a in call_args]
    src(f"_backward_steps({', '.join(call_args)})", 1)
    src()
    _emit_after_loop(src, kernel)
    checked = " and ".join(["finite", *(f"all_finite({c.name})" for c in kernel.carried)])
    src(f"if not ({checked}):", 1)
    if late:
        src("check_sequence('dys', dys, (T, B, n_h), dtype, why=' like ys')  # raises if dys is the cause", 2)
    src("# compiled code raises no floating-point warning: warn as NumPy would (the other gradients are products of these)", 2)
    src("warnings.warn(\"overflow or invalid value in backward: δz or a state's gradient holds inf or NaN\", RuntimeWarning, stacklevel=2)", 2)
    src("return {" + ", ".join(f"{key!r}: {_gradient(kernel, key)}" for key in kernel.gradients) + "}", 1)


def _gradient(kernel: KernelPlan, key: str) -> str:
    if key in kernel.cell.params:
        return f"d_{key}"
    if key == "xs":
        return "d_xs"
    return next(c.name for c in kernel.carried if f"{c.state}0" == key)


def _emit_after_loop(src: _Source, kernel: KernelPlan) -> None:
    """δb, δx and the weight gradients after the backward loop: one BLAS product
    over all steps at once per block (δx) and per block and part (δW), in
    one compiled call each of the runtime's ``input_gradient`` and
    ``weight_gradient`` (a NumPy call costs about 1 µs, as much as the work
    at T=20, B=4; the runtime's functions compile once per dtype, not once
    per kernel)."""
    k = len(kernel.blocks)
    src(f"dZ2 = dZ.reshape({k}, T * B, n_h)", 1)
    src("# δb = Σ_t Σ_batch δz(t): the sums of every block, one pass over dZ that also tells whether all are finite", 1)
    src(f"d_B = np.empty(({k}, n_h), dtype)", 1)
    src("finite = block_sums(dZ2, d_B)", 1)
    for g in kernel.bias_grads:
        src(f"d_{g.bias} = d_B[{g.block}]", 1)
    xg = kernel.input_grad
    if xg is not None:
        if [i for i, _ in xg.blocks] != list(range(len(xg.blocks))):
            raise ValueError(f"{kernel.cell.name}: the blocks reading x(t) are not the first ones of Z: {xg.blocks}")
        if [w for _, w in xg.blocks] != [b.x_weight for b in kernel.input_projection.blocks]:
            raise ValueError(f"{kernel.cell.name}: δx reads other x blocks than the input projection: {xg.blocks}")
        src(f"# {xg.equation}, for all steps at once", 1)
        src(f"W_x = np.ascontiguousarray(W_x.transpose(0, 2, 1))  # {', '.join(w for _, w in xg.blocks)} stacked", 1)
        src("d_xs = np.empty((T, B, n_x), dtype)", 1)
        src("input_gradient(dZ2, W_x, d_xs.reshape(T * B, n_x))  # the blocks reading x(t): the first ones", 1)
    else:
        src("d_xs = np.zeros((T, B, n_x), dtype)  # no block takes x(t)", 1)
    _emit_part_steps(src, kernel)
    for g in kernel.weight_grads:
        src(f"# {g.equation}", 1)
        p = kernel.cell.params[g.weight]
        src(f"d_{g.weight} = np.empty(({p.rows}, {' + '.join(p.cols)}), dtype)", 1)
        for part, columns in zip(g.parts, g.columns):
            src(f"weight_gradient(dZ2, {g.block}, {part}_steps, d_{g.weight}, {' + '.join(columns.start) or '0'})", 1)
