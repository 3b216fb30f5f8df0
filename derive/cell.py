"""The :class:`Cell`: one recurrent cell's step as ordered symbolic equations.

A cell file (``derive/cells/*.py``) describes a step with a
:class:`CellBuilder`; everything else — the backward equations, the LaTeX,
the kernels, the site — is derived from the :class:`Cell` it builds.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import sympy

from . import functions
from .graph import Affine, Elementwise, Node, Param, Size, Vector

if TYPE_CHECKING:
    from .derivation import Backward, Jacobian
    from .render.lambdified import StepFunctions


@dataclass(frozen=True)
class State:
    """A recurrent state: ``prev`` is its value at t−1 (an input of the
    step), ``name`` the node that computes its value at t."""

    name: str
    prev: str


@dataclass(frozen=True)
class Cell:
    """One recurrent cell: its vectors, parameters and ordered equations.

    Vectors are columns; a batch of ``B`` sequences stacks ``B`` columns
    side by side, so every equation holds for any batch size.
    """

    name: str
    title: str
    summary: str
    vectors: dict[str, Vector]
    params: dict[str, Param]
    nodes: tuple[Node, ...]
    states: tuple[State, ...]
    output: str
    inputs: tuple[str, ...] = ("x",)
    source: str = ""  # the file the cell comes from, named in generated files
    memory: str = ""  # the state whose gradient the experiments follow (see CellBuilder.build)

    # -- structure -----------------------------------------------------
    def node(self, name: str) -> Node:
        """The node that computes vector ``name``."""
        for node in self.nodes:
            if node.target == name:
                return node
        raise KeyError(f"cell {self.name!r} has no node {name!r}")

    def param_shape(self, name: str, n_x: int, n_h: int) -> tuple[int, ...]:
        """The concrete shape of parameter ``name`` at sizes ``n_x``, ``n_h``."""
        sizes = {"n_x": n_x, "n_h": n_h}
        p = self.params[name]
        if p.is_bias:
            return (sizes[p.rows],)
        return (sizes[p.rows], sum(sizes[c] for c in p.cols))

    def weight_blocks(self, weight: str) -> list[tuple[str, Size]]:
        """The column blocks of ``weight``: (part label, size) in order.

        A part's label is the block label of its vector (``c`` for c(t−1)
        and for G_r ⊙ c(t−1)), else its own name; two parts of one weight
        with the same label are told apart by their vector names."""
        for node in self.nodes:
            if isinstance(node, Affine) and node.weight == weight:
                labels = [self.vectors[p].block or self.vectors[p].text or p for p in node.parts]
                labels = [p if labels.count(lab) > 1 else lab for lab, p in zip(labels, node.parts)]
                return [(lab, self.vectors[p].size) for lab, p in zip(labels, node.parts)]
        raise KeyError(f"cell {self.name!r} has no weight {weight!r}")

    @property
    def per_element(self) -> list[str]:
        """The per-element (diagonal) parameters, used as ``p ⊙ v``."""
        return [n for n, p in self.params.items() if p.per_element]

    def forward_equations(self) -> list[sympy.Eq]:
        """The step's equations, in order, as SymPy ``Eq`` objects.

        Vectors are symbols treated elementwise (a product is ⊙);
        ``Concat(W, p, q)`` stands for ``W [p; q]``.
        """
        return [sympy.Eq(sympy.Symbol(n.target), _node_expr(n), evaluate=False) for n in self.nodes]

    def shown_equations(self) -> list[sympy.Eq]:
        """The equations as a reader sees them: hidden intermediate nodes
        (pre-activations, Gr ⊙ c(t−1)) substituted into their consumers."""
        return [
            sympy.Eq(sympy.Symbol(n.target), self.expand_hidden(_node_expr(n)), evaluate=False)
            for n in self.nodes
            if n.show
        ]

    def expand_hidden(self, expr: sympy.Expr) -> sympy.Expr:
        """Substitute every hidden node in ``expr`` by its definition."""
        hidden = {sympy.Symbol(n.target): _node_expr(n) for n in self.nodes if not n.show}
        for _ in range(len(hidden) + 1):
            new = expr.xreplace(hidden)
            if new == expr:
                return new
            expr = new
        return expr

    # -- derived ---------------------------------------------------------
    @cached_property
    def backward(self) -> Backward:
        """The per-step VJPs and the BPTT recurrence, derived from the
        forward equations (see :mod:`derive.derivation`)."""
        from .derivation import derive_backward

        return derive_backward(self)

    @cached_property
    def jacobians(self) -> list[Jacobian]:
        """∂s(t)/∂s′(t−1) for every pair of states, derived in forward mode."""
        from .derivation import state_jacobians

        return state_jacobians(self)

    def latex(self, which: Literal["forward", "backward", "jacobian", "all"] = "all") -> str:
        """The cell's equations as one KaTeX-compatible ``aligned`` block."""
        from .render.latex import cell_latex

        return cell_latex(self, which)

    def text(self, which: Literal["forward", "backward", "jacobian", "all"] = "all") -> str:
        """The cell's equations as readable plain text (one per line)."""
        from .render.text import cell_text

        return cell_text(self, which)

    def lambdify(self) -> StepFunctions:
        """The per-step forward and VJP as NumPy functions, built now with
        ``sympy.lambdify`` from the same derived equations as the kernels."""
        from .render.lambdified import StepFunctions

        return StepFunctions(self)

    def _repr_latex_(self) -> str:
        return "$$" + self.latex("forward") + "$$"

    def __repr__(self) -> str:
        return f"<Cell {self.name}: {self.title}>"


def _node_expr(node: Node) -> sympy.Expr:
    return node.expr() if isinstance(node, Affine) else node.expr


def _latex_name(name: str) -> str:
    """``W_hx`` → ``W_{hx}``: the first underscore starts the subscript."""
    base, _, sub = name.partition("_")
    return f"{base}_{{{sub}}}" if sub else base


class CellError(ValueError):
    """A cell that cannot be built: which file, which node, why — one line.

    Every mistake in a cell definition (an undefined vector, sizes that do
    not agree, a weight on two affine nodes, an unknown function, a node
    that reaches no output) is reported this way, before anything is
    derived; the command line prints it on one line and exits with 2.
    """

    def __init__(self, reason: str, *, node: str | None = None, source: str = "", line: int | None = None,
                 column: int | None = None) -> None:
        self.reason, self.node, self.source, self.line, self.column = reason, node, source, line, column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or "cell"
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        node = f" node {self.node!r}:" if self.node else ""
        return f"{where}:{node} {self.reason}"


# names a generated kernel binds itself, and the functions it calls: a vector so named would shadow them
_RESERVED = frozenset({"T", "B", "t", "n_x", "n_h", "xs", "ys", "xs1", "Z", "Z_t", "dZ", "dZ_t", "dZ2", "dtype",
                       "params", "cache", "sizes", "state0", "dstate", "dys", "np", "half", "bound", "rng",
                       "Any", "CELL", "STATES", "OUTPUT", "PARAM_SHAPES"}
                      | {f for a in functions.REGISTRY for f in (a.name, *a.runtime)}
                      | {"check_params", "check_sequence", "check_states", "init_uniform", "sigmoid_of_half"}
                      # the Numba kernels' wrappers (derive/render/numba_kernel.py)
                      | {"biases", "warnings", "all_finite", "project", "input_gradient", "weight_gradient", "gemm",
                         "block_sums", "finite"}
                      # the parallel-scan kernels' chunk locals (derive/render/scan_kernel.py)
                      | {"C", "g_chunk", "t0", "t1", "a_chunk", "g_next", "W_x", "dW_x", "dB"})
# the Numba kernels' loop indices, typed constants and functions (derive/render/numba_kernel.py): the
# compiled loops read vectors and per-element parameters by name (a bias's gradient: a name chosen free)
_RESERVED_IN_LOOPS = frozenset({"b", "j", "zero", "one", "two", "dot", "dot_add", "flat", "tile_rows", "sum_rows", "numba",
                                "dZ_x"})
# prefixes of names the kernels derive from others: a vector so named could collide with one of them
_RESERVED_PREFIXES = ("carried_", "mix_")
_CONSTANT_NAME = re.compile(r"k_\d+(_\d+)?")  # the Numba kernels' typed constants other than 0, 1, 2, ½: k_3, k_1_6

current_source: str = ""
"""The file being loaded by :func:`derive.load_cell`: a builder names it by default."""


def default_source(name: str) -> str:
    """The file of a built-in cell: ``derive/cells/<name>.py``."""
    return f"derive/cells/{name}.py"


# what an element-wise expression may contain besides registered functions
_ALGEBRA = (sympy.Symbol, sympy.Number, sympy.Add, sympy.Mul, sympy.Pow)


class CellBuilder:
    """Describes a cell step by step, in the order of its equations.

    >>> b = CellBuilder("rnn", "Vanilla RNN", "…")
    >>> x, a_prev = b.input("x"), b.state("a")
    >>> z = b.affine("z_a", "W_a", [a_prev, x], "b_a")
    >>> a = b.node("a", sympy.tanh(z))
    >>> cell = b.build(output="a")

    Each call is checked as it is made and :meth:`build` checks the whole;
    a mistake raises one :class:`CellError` naming the node and the reason.
    """

    def __init__(self, name: str, title: str = "", summary: str = "", *, source: str = "") -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise CellError(f"the cell's name must be a Python identifier, got {name!r}", source=source or current_source)
        self.name, self.title, self.summary = name, title or name, summary
        self.source = source or current_source or default_source(name)
        self.vectors: dict[str, Vector] = {}
        self.params: dict[str, Param] = {}
        self.nodes: list[Node] = []
        self.states: list[State] = []
        self.inputs: list[str] = []
        self._owner: dict[str, str] = {}  # parameter -> the node that uses it (one node each for W and b)

    def _error(self, reason: str, node: str | None = None) -> CellError:
        return CellError(reason, node=node, source=self.source)

    def _check_name(self, name: str, what: str, *, in_loops: bool = True) -> None:
        """Refuse a name that is not an identifier or that a kernel binds
        itself (``in_loops``: also the compiled loops' locals, for what
        those loops read: vectors and per-element parameters)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise self._error(f"a {what}'s name must be an identifier, got {name!r}", str(name))
        if name.startswith(("d_", "matmul_", "_")):
            # δv is named d_v by the derivation and the kernels: a vector d_c would collide with δc
            raise self._error(f"the name {name!r} is reserved (d_… names the gradients, matmul_… and _… the kernels' products)", name)
        # <s>_next: d_<s>_next is the kernels' gradient carried back to state s (a bias a_next broke δa0)
        if (keyword.iskeyword(name) or name in _RESERVED or name.endswith(("_seq", "_steps", "_next"))
                or (in_loops and (name in _RESERVED_IN_LOOPS or _CONSTANT_NAME.fullmatch(name)))
                or name.startswith(_RESERVED_PREFIXES) or re.fullmatch(r"shared\d+", name)):
            raise self._error(f"the name {name!r} is reserved (a Python keyword or a name the kernels use)", name)

    def _add_vector(self, vector: Vector) -> sympy.Symbol:
        self._check_name(vector.name, "vector")
        if vector.name in self.vectors or vector.name in self.params:
            raise self._error(f"{vector.name!r} is defined twice", vector.name)
        self.vectors[vector.name] = vector
        return vector.symbol

    def input(self, name: str = "x", latex: str = "x") -> sympy.Symbol:
        """The input x(t), of size n_x."""
        if self.inputs:
            raise self._error(f"a cell has one input; {self.inputs[0]!r} is already defined", name)
        self.inputs.append(name)
        return self._add_vector(Vector(name, latex, "n_x", "input", 0, block=latex, text=latex))

    def state(self, name: str, latex: str | None = None) -> sympy.Symbol:
        """A recurrent state; returns its value at t−1. A later node named
        ``name`` must compute its value at t."""
        latex = latex or _latex_name(name)
        prev = f"{name}_prev"
        self.states.append(State(name, prev))
        return self._add_vector(Vector(prev, latex, "n_h", "state_prev", -1, block=_plain(latex), text=_plain(latex)))

    def param(self, name: str, latex: str | None = None) -> sympy.Symbol:
        """A per-element (diagonal) parameter ``p`` of size n_h, to use as
        ``p ⊙ v`` (or ``+ p``) in element-wise nodes; its gradient is summed
        over the batch and time."""
        self._check_name(name, "parameter")
        if name in self.params or name in self.vectors:
            raise self._error(f"{name!r} is defined twice", name)
        self.params[name] = Param(name, latex or _latex_name(name), "n_h", (), per_element=True)
        return sympy.Symbol(name)

    def affine(
        self, target: str, weight: str, parts: list[sympy.Symbol], bias: str | None = None
    ) -> sympy.Symbol:
        """``target = weight [parts…] + bias``, a pre-activation of size n_h.

        ``parts`` are vectors already defined: the input, previous states,
        or earlier nodes (a state at t included)."""
        if not parts:
            raise self._error("an affine node needs at least one part", target)
        names: list[str] = []
        for p in parts:
            name = getattr(p, "name", None)
            if not isinstance(p, sympy.Symbol) or name not in self.vectors:
                raise self._error(f"{weight} [·] reads {p!s}, which is not a defined vector "
                                  f"(defined: {', '.join(self.vectors) or 'none'})", target)
            names.append(name)
        if len(set(names)) != len(names):
            raise self._error(f"{weight} [·] reads the same vector twice: {names}", target)
        for param in (weight, bias):
            if param is None:
                continue
            self._check_name(param, "parameter", in_loops=False)
            if param in self.params or param in self.vectors:
                other = self._owner.get(param)
                where = f"the affine node {other!r}" if other else "another definition"
                raise self._error(f"{param!r} is already used by {where}: each weight and bias belongs to one affine node", target)
        cols = tuple(self.vectors[p].size for p in names)
        self.params[weight] = Param(weight, _latex_name(weight), "n_h", cols)
        self._owner[weight] = target
        if bias:
            self.params[bias] = Param(bias, _latex_name(bias), "n_h", ())
            self._owner[bias] = target
        self.nodes.append(Affine(target, weight, tuple(names), bias))
        return self._add_vector(Vector(target, _latex_name(target), "n_h", "node", text=target))

    def node(
        self, target: str, expr: sympy.Expr, *, latex: str | None = None, show: bool = True, block: str = ""
    ) -> sympy.Symbol:
        """``target = expr``, elementwise. ``show=False`` hides it in the
        displayed equations (it is substituted into its consumers).

        An activation applied inside a larger expression (``G_o ⊙ tanh(c)``)
        gets a hidden node of its own, so that its derivative is read from
        the cache instead of evaluated again."""
        try:  # strict: SymPy objects and numbers only, never a string (sympify would evaluate it)
            expr = sympy.sympify(expr, strict=True)
        except sympy.SympifyError:
            raise self._error(f"expected a SymPy expression, got {type(expr).__name__}", target) from None
        # decimal constants as exact rationals (0.25 → 1/4): the proofs compare exactly
        expr = expr.xreplace({f: sympy.Rational(str(f)) for f in expr.atoms(sympy.Float)})
        self._check_expression(target, expr)
        expr = self._hoist(target, expr)
        self.nodes.append(Elementwise(target, expr, show))
        latex = latex or _latex_name(target)
        return self._add_vector(Vector(target, latex, "n_h", "node", block=block, text=_plain(latex)))

    # -- checks ------------------------------------------------------------
    def _check_expression(self, target: str, expr: sympy.Expr) -> None:
        for e in sympy.preorder_traversal(expr):
            if isinstance(e, sympy.Function) and functions.of(e) is not None and not functions.of(e).indicator:
                continue
            if isinstance(e, sympy.Pow) and not e.exp.is_Number:
                raise self._error(f"a power's exponent must be a number, got {e.exp}", target)
            if not isinstance(e, _ALGEBRA):
                name = type(e).__name__ if not isinstance(e, sympy.Function) else e.func.__name__
                raise self._error(f"unknown function {name!r}; known: {', '.join(functions.known_names())}", target)
        unknown = sorted(s.name for s in expr.free_symbols if s.name not in self.vectors and s.name not in self.params)
        if unknown:
            raise self._error(f"uses undefined vectors {unknown} (defined: {', '.join(self.vectors) or 'none'})", target)
        weights = sorted(s.name for s in expr.free_symbols if s.name in self.params and not self.params[s.name].per_element)
        if weights:
            raise self._error(f"uses {weights}, a weight or bias of an affine node, element-wise: "
                              "declare a per-element parameter instead", target)
        sizes: dict[str, str] = {}
        for name in sorted(s.name for s in expr.free_symbols if s.name in self.vectors):  # sorted: one message per input
            sizes.setdefault(self.vectors[name].size, name)
        if "n_x" in sizes and "n_h" in sizes:
            raise self._error(f"mixes sizes element-wise: {sizes['n_h']} is n_h, {sizes['n_x']} is n_x "
                              "(pass the n_x vector through a weight first)", target)
        if set(sizes) == {"n_x"}:
            raise self._error(f"reads only n_x vectors ({sizes['n_x']}): element-wise nodes are of size n_h, "
                              "pass the input through a weight first", target)
        if not sizes:
            raise self._error(f"reads no vector ({expr}): a node must read the input, a state or a node", target)

    def _hoist(self, target: str, expr: sympy.Expr) -> sympy.Expr:
        """Give each activation nested inside ``expr`` a hidden node."""
        nested = [e for e in sympy.preorder_traversal(expr) if e != expr and functions.of(e) is not None]
        for k, e in enumerate(nested):
            if e not in expr.atoms(type(e)):  # already replaced through an outer one
                continue
            arg = e.args[0]
            base = f"{functions.of(e).name}_{arg.name}" if arg.is_Symbol else f"{target}_{functions.of(e).name}{k}"
            name = base
            while name in self.vectors or name in self.params:
                name += "_"
            symbol = self.node(name, e, show=False)
            expr = expr.xreplace({e: symbol})
        return expr

    def build(self, output: str, *, memory: str | None = None) -> Cell:
        """The finished cell; ``output`` is the vector y(t) it emits.

        ``memory`` is the state whose gradient the experiments follow: by
        default the only state, or the one state that is not the output
        (the LSTM's memory cell c rather than its output a)."""
        targets = [n.target for n in self.nodes]
        if not self.inputs:
            raise self._error("the cell has no input: call input('x')")
        if not self.states:
            raise self._error("the cell has no recurrent state: call state(name)")
        for s in self.states:
            if s.name not in targets:
                raise self._error(f"state {s.name!r} is never computed: add a node named {s.name!r}", s.name)
        if output not in targets:
            raise self._error(f"output {output!r} is never computed (nodes: {', '.join(targets)})", output)
        self._check_reach(output)
        names = [s.name for s in self.states]
        if memory is None:
            others = [s for s in names if s != output]
            memory = names[0] if len(names) == 1 else others[0] if len(others) == 1 else names[0]
        if memory not in names:
            raise self._error(f"memory {memory!r} is not a state (states: {', '.join(names)})", memory)
        cell = Cell(
            self.name,
            self.title,
            self.summary,
            dict(self.vectors),
            dict(self.params),
            tuple(self.nodes),
            tuple(self.states),
            output,
            tuple(self.inputs),
            self.source,
            memory,
        )
        self._check_block_names(cell)
        return cell

    def _check_block_names(self, cell: Cell) -> None:
        """A weight's column blocks (W_h on [c, x]: W_hc, W_hx) are named in
        the kernels and on paper: no block may take another name of the cell."""
        from .render.naming import block_latex

        taken = set(self.params) | set(self.vectors)
        for node in self.nodes:
            if isinstance(node, Affine) and len(node.parts) > 1:
                for part in node.parts:
                    block = _plain(block_latex(cell, node.weight, part))
                    if block in taken:
                        raise self._error(f"the block of {node.weight} on {part} is named {block!r}, "
                                          "which the cell already uses: rename one", node.target)
                    taken.add(block)

    def _check_reach(self, output: str) -> None:
        """Every node, input, state and parameter reaches the output or a new state."""
        reads: dict[str, set[str]] = {}
        for n in self.nodes:
            if isinstance(n, Affine):
                reads[n.target] = set(n.parts) | {n.weight} | ({n.bias} if n.bias else set())
            else:
                reads[n.target] = {s.name for s in n.expr.free_symbols}
        reached, todo = set(), [output, *(s.name for s in self.states)]
        while todo:
            v = todo.pop()
            if v not in reached:
                reached.add(v)
                todo += reads.get(v, ())
        for n in self.nodes:
            if n.target not in reached:
                raise self._error("reaches neither the output nor a new state", n.target)
        for name in [*self.inputs, *(s.prev for s in self.states), *self.params]:
            if name not in reached:
                raise self._error(f"{name!r} is defined but never used on a path to the output or a state", name)


def _plain(latex: str) -> str:
    """``G_{r}`` → ``G_r``."""
    return latex.replace("{", "").replace("}", "")
