"""The plain-text cell format: a ``.cell`` file, one equation a line.

For people who would rather write a cell's equations than Python, in the
thread's notation (ASCII spellings accepted)::

    # minimal gated unit (Zhou et al. 2016)
    name: mgu
    title: Minimal gated unit
    G_f = σ(W_f [c(t-1), x(t)] + b_f)
    h(t) = tanh(W_h [G_f ⊙ c(t-1), x(t)] + b_h)
    c(t) = (1 - G_f) ⊙ c(t-1) + G_f ⊙ h(t)

:func:`read_cell_file` and :func:`parse_cell` turn such a text into a
:class:`~derive.cell.Cell` through the public :class:`~derive.cell.CellBuilder`,
so a ``.cell`` file is checked exactly as a Python cell is.

The text is never run as code: a hand-written tokenizer and a
recursive-descent parser build SymPy objects directly (``Symbol``, ``Add``,
``Mul``, ``Pow``, ``Integer``, ``Rational`` from digit strings checked here).
The work is bounded (text size, line count and length, nesting depth,
exponents, number sizes, node count), so a hostile file is refused quickly.
Every refusal is one :class:`~derive.cell.CellError` naming the line, the
column and what was expected, errors found by the builder included.

Grammar (``#`` starts a comment; blank lines are ignored)::

    file      := header* equation+
    header    := KEY ':' VALUE          KEY: name, title, summary, output, memory
    equation  := target '=' sum
    target    := NAME | NAME '(' 't' ')'
    sum       := term (('+' | '-') term)*
    term      := factor (('⊙' | '*' | '/') factor)*
    factor    := '-' factor | power
    power     := atom [('^' | '**') exponent]      exponent: an integer in [-9, 9],
    exponent  := ['-'] INT | '(' ['-'] INT ')'       parentheses allowed
    atom      := NUMBER | '(' sum ')' | FUNCTION '(' sum ')'
               | NAME '(' 't' ')' | NAME '(' 't' '-' '1' ')'    a vector at t or t-1
               | NAME '[' sum (',' sum)* ']' | NAME vector      a weight applied
               | NAME                                          a node or a parameter

``⊙`` and ``*`` are both the Hadamard product; ``−`` (U+2212) is a minus.
FUNCTION is an activation of :mod:`derive.functions` (σ, sigmoid, tanh,
relu, softplus, hard_sigmoid, exp, identity and their aliases). NAME is a
Python identifier made of ASCII letters, digits, ``_`` and Greek letters,
not a Python keyword. NUMBER is ``12`` or ``0.5``.

Meaning:

* ``NAME(t-1)`` is the previous value of the state NAME (an equation must
  define NAME); the one vector read as ``NAME(t)`` that no equation defines
  is the input.
* ``W [v1, v2]`` or ``W v(t)`` is an affine node named ``z_<suffix of W>``
  (``W_f`` → ``z_f``; a weight without a suffix takes the equation's target,
  ``z_c``). A bare new name added to it in the same sum is its bias:
  ``W x(t) + u ⊙ c(t-1) + b`` is ``(W [x(t)] + b) + u ⊙ c(t-1)``. A part that
  is an expression (``G_f ⊙ c(t-1)``) becomes a hidden node.
* A bare NAME is the node defined on an earlier line, else a per-element
  (diagonal) parameter (``p_i ⊙ c(t-1)``).
* An activation inside a larger expression (``G_o ⊙ tanh(c(t))``) gets a
  hidden node (``tanh_c``) as it is read, as the builder would give it.
* The output is the ``output:`` header, else the last equation's target.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import sympy

from . import functions
from .cell import Cell, CellBuilder, CellError

MAX_CHARS = 100_000
"""The longest text read (characters)."""
MAX_LINES = 2_000
MAX_LINE_LENGTH = 1_000
MAX_DEPTH = 40
"""Nesting of parentheses, brackets, calls and unary minus signs."""
MAX_NAME_LENGTH = 64
MAX_NUMBER_LENGTH = 30
MAX_EXPONENT = 9
"""Exponents are integers in [−MAX_EXPONENT, MAX_EXPONENT]."""
MAX_POWER = 64
"""No power in an expression beyond this (``((x^9)^9)^9`` is refused)."""
MAX_NUMBER_BITS = 2_048
"""No number in an expression beyond 2^2048."""
MAX_NODES = 500
"""The most nodes (equations, affine and hidden nodes) a cell may have."""

RESERVED_PREFIX = "d_"
"""The derivation names the gradient of ``c`` ``d_c`` (and ``d_y``,
``d_c_next``): a vector of that name would be confused with a gradient."""

HEADERS = ("name", "title", "summary", "output", "memory")
"""The header keys, written ``key: value`` before the first equation."""

_OPS = {
    "+": "+", "-": "-", "\u2212": "-", "⊙": "*", "*": "*", "/": "/", "^": "^",
    "(": "(", ")": ")", "[": "[", "]": "]", ",": ",", "=": "=",
}
_OPERATORS = "an operator (+, -, ⊙, *, /)"
_WEIGHT_USE = "a weight applies to a list, W [v1, v2], or to one vector, W x(t)"


# -- tokens ------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "number", "op", "end"
    text: str  # as written
    column: int  # 1-based
    op: str = ""  # the normalised operator ('⊙' -> '*', '−' -> '-', '**' -> '^')

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the line"
        if self.kind == "name":
            return f"name {self.text!r}"
        if self.kind == "number":
            return f"number {self.text}"
        return repr(self.text)


def _name_char(ch: str, first: bool) -> bool:
    if ch == "_" or "a" <= ch <= "z" or "A" <= ch <= "Z":
        return True
    if "\u0370" <= ch <= "\u03ff" and ch.isalpha():  # Greek letters (σ)
        return True
    return not first and "0" <= ch <= "9"


def _show_char(ch: str) -> str:
    code = f"U+{ord(ch):04X}"
    return f"{ch!r} ({code})" if ch.isprintable() and not ch.isspace() else code


class _Text:
    """One text being read: its source name, for errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, line: int, column: int, reason: str, node: str | None = None) -> CellError:
        return CellError(reason, node=node, source=self.source, line=line, column=column)

    def tokenize(self, text: str, line: int, start: int) -> list[_Token]:
        """The tokens of ``text``, whose first character is at column ``start``."""
        tokens: list[_Token] = []
        i, n = 0, len(text)
        while i < n:
            ch, col = text[i], start + i
            if ch.isspace():
                i += 1
            elif _name_char(ch, True):
                j = i + 1
                while j < n and _name_char(text[j], False):
                    j += 1
                name = text[i:j]
                if len(name) > MAX_NAME_LENGTH:
                    raise self.error(line, col, f"name too long ({len(name)} characters, at most {MAX_NAME_LENGTH})")
                if not name.isidentifier():
                    raise self.error(line, col, f"expected a name made of letters, digits and '_', got {name!r}")
                if keyword.iskeyword(name):
                    raise self.error(line, col, f"{name!r} is a Python keyword: expected another name")
                if name.startswith(RESERVED_PREFIX):
                    raise self.error(line, col, f"{name!r}: names starting with {RESERVED_PREFIX!r} are the "
                                                "derivation's gradients (d_c is δc): expected another name")
                tokens.append(_Token("name", name, col))
                i = j
            elif "0" <= ch <= "9":
                j = i
                while j < n and "0" <= text[j] <= "9":
                    j += 1
                if j < n and text[j] == ".":
                    j += 1
                    if not (j < n and "0" <= text[j] <= "9"):
                        raise self.error(line, start + j, "expected a digit after the decimal point")
                    while j < n and "0" <= text[j] <= "9":
                        j += 1
                if j - i > MAX_NUMBER_LENGTH:
                    raise self.error(line, col, f"number too long ({j - i} characters, at most {MAX_NUMBER_LENGTH})")
                tokens.append(_Token("number", text[i:j], col))
                i = j
            elif text.startswith("**", i):
                tokens.append(_Token("op", "**", col, "^"))
                i += 2
            elif ch in _OPS:
                tokens.append(_Token("op", ch, col, _OPS[ch]))
                i += 1
            else:
                raise self.error(line, col, f"unexpected character {_show_char(ch)}: expected a name, a number, "
                                            "an operator (+ - ⊙ * / ^), a parenthesis, '[', ']', ',' or '='")
        tokens.append(_Token("end", "", start + n))
        return tokens


# -- syntax tree -------------------------------------------------------------
@dataclass(frozen=True)
class _Num:
    value: sympy.Rational
    column: int


@dataclass(frozen=True)
class _Name:
    """A bare name: a node defined earlier, or a parameter."""

    name: str
    column: int


@dataclass(frozen=True)
class _Vec:
    """``name(t)`` (lag 0) or ``name(t-1)`` (lag −1)."""

    name: str
    lag: int
    column: int


@dataclass(frozen=True)
class _Call:
    entry: functions.Activation
    arg: _Expr
    column: int


@dataclass(frozen=True)
class _Weight:
    """``weight [parts…]`` or ``weight v(t)``."""

    weight: str
    parts: tuple[_Expr, ...]
    column: int


@dataclass(frozen=True)
class _Neg:
    operand: _Expr
    column: int


@dataclass(frozen=True)
class _Sum:
    terms: tuple[tuple[int, _Expr], ...]  # (sign ±1, term)
    column: int


@dataclass(frozen=True)
class _Binary:
    op: str  # "*" or "/"
    left: _Expr
    right: _Expr
    column: int  # of the operator


@dataclass(frozen=True)
class _Power:
    base: _Expr
    exponent: int
    column: int  # of the operator


_Expr = Union[_Num, _Name, _Vec, _Call, _Weight, _Neg, _Sum, _Binary, _Power]


@dataclass(frozen=True)
class _Equation:
    line: int
    target: str
    column: int  # of the target
    rhs: _Expr


def _function(name: str) -> functions.Activation | None:
    """The activation called ``name`` (indicators excluded), or None."""
    try:
        entry = functions.activation(name)
    except KeyError:
        return None
    return None if entry.indicator else entry


_PROBE = sympy.Dummy("probe")


def _apply(entry: functions.Activation, arg: sympy.Expr) -> sympy.Expr:
    """``f(arg)`` as written, not simplified: SymPy's own simplification of
    tanh or exp of a nested sum asks assumption queries that can take
    seconds. A function that evaluates away on a plain symbol (identity)
    is replaced by its argument."""
    if entry.function(_PROBE) == _PROBE:
        return arg
    return entry.function(arg, evaluate=False)


def _known_functions() -> str:
    spelled = []
    for entry in functions.REGISTRY:
        if not entry.indicator:
            spelled.append(entry.name + (f" ({', '.join(entry.aliases)})" if entry.aliases else ""))
    return ", ".join(spelled)


# -- parser (one line) -------------------------------------------------------
class _LineParser:
    """Recursive descent over the tokens of one equation."""

    def __init__(self, text: _Text, tokens: list[_Token], line: int) -> None:
        self.text, self.tokens, self.line = text, tokens, line
        self.i = 0
        self.depth = 0

    def peek(self, k: int = 0) -> _Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> _Token:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def is_op(self, op: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == "op" and tok.op == op

    def error(self, tok: _Token, reason: str) -> CellError:
        return self.text.error(self.line, tok.column, reason)

    def expected(self, what: str, tok: _Token | None = None) -> CellError:
        tok = tok or self.peek()
        return self.error(tok, f"expected {what}, got {tok.describe()}")

    def close(self, closing: str, opening: _Token) -> None:
        if not self.is_op(closing):
            raise self.expected(f"{closing!r} to close {opening.text!r} opened at column {opening.column}")
        self.next()

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(tok, f"expression nested too deeply (more than {MAX_DEPTH} levels)")

    # -- equation ----------------------------------------------------------
    def equation(self) -> _Equation:
        tok = self.next()
        if tok.kind != "name":
            raise self.expected("the name of the vector this line defines, as in 'h(t) = …'", tok)
        if _function(tok.text) is not None:
            raise self.error(tok, f"{tok.text!r} is a function: expected the name of a vector to define")
        if tok.text == "t":
            raise self.error(tok, "'t' is the time index: expected the name of a vector to define")
        if self.is_op("("):
            opening = self.next()
            lag = self.time_index(tok, opening)
            if lag != 0:
                raise self.error(opening, f"an equation defines {tok.text}(t): expected 't', not 't-1', on the left")
        if not self.is_op("="):
            raise self.expected("'=' after the vector this line defines")
        self.next()
        rhs = self.sum()
        self.finish()
        return _Equation(self.line, tok.text, tok.column, rhs)

    def finish(self) -> None:
        tok = self.peek()
        if tok.kind == "end":
            return
        if tok.kind == "op" and tok.op in ")]":
            raise self.error(tok, f"unexpected {tok.text!r}: there is no opening bracket to close")
        hint = f" ({_WEIGHT_USE})" if tok.kind in ("name", "number") or self.is_op("(") else ""
        raise self.error(tok, f"expected {_OPERATORS} or the end of the line, got {tok.describe()}{hint}")

    # -- expressions -------------------------------------------------------
    def sum(self) -> _Expr:
        start = self.peek()
        self.enter(start)
        terms = [(1, self.term())]
        while self.is_op("+") or self.is_op("-"):
            sign = 1 if self.next().op == "+" else -1
            terms.append((sign, self.term()))
        self.depth -= 1
        return terms[0][1] if len(terms) == 1 else _Sum(tuple(terms), start.column)

    def term(self) -> _Expr:
        left = self.factor()
        while self.is_op("*") or self.is_op("/"):
            tok = self.next()
            left = _Binary(tok.op, left, self.factor(), tok.column)
        return left

    def factor(self) -> _Expr:
        if self.is_op("-"):
            tok = self.next()
            self.enter(tok)
            operand = self.factor()
            self.depth -= 1
            return _Neg(operand, tok.column)
        if self.is_op("+"):
            raise self.expected("a term (a unary '+' is not needed)")
        return self.power()

    def power(self) -> _Expr:
        base = self.atom()
        if self.is_op("^"):
            tok = self.next()
            base = _Power(base, self.exponent(), tok.column)
            if self.is_op("^"):
                raise self.error(self.peek(), "expected one exponent: write (x^a)^b with parentheses")
        return base

    def exponent(self) -> int:
        opening = self.next() if self.is_op("(") else None
        negative = self.is_op("-")
        if negative:
            self.next()
        tok = self.peek()
        what = f"an integer exponent between -{MAX_EXPONENT} and {MAX_EXPONENT}"
        if tok.kind != "number" or "." in tok.text or int(tok.text) > MAX_EXPONENT:
            raise self.expected(what, tok)
        self.next()
        if opening is not None:
            self.close(")", opening)
        return -int(tok.text) if negative else int(tok.text)

    def atom(self) -> _Expr:
        tok = self.peek()
        if tok.kind == "number":
            self.next()
            whole, _, frac = tok.text.partition(".")
            value = sympy.Integer(int(whole)) if not frac else sympy.Rational(int(whole + frac), 10 ** len(frac))
            return _Num(value, tok.column)
        if self.is_op("("):
            opening = self.next()
            inner = self.sum()
            self.close(")", opening)
            return inner
        if tok.kind == "name":
            return self.named()
        raise self.expected("a name, a number, '(' or a function such as σ(…)", tok)

    def named(self) -> _Expr:
        tok = self.next()
        name = tok.text
        entry = _function(name)
        if entry is not None:
            if not self.is_op("("):
                raise self.expected(f"'(' after the function {name!r}")
            opening = self.next()
            arg = self.sum()
            self.close(")", opening)
            return _Call(entry, arg, tok.column)
        if name == "t":
            raise self.error(tok, "'t' is the time index: expected a vector NAME(t) or NAME(t-1)")
        if self.is_op("("):
            after = self.peek(1)
            if after.kind == "name" and after.text == "t":
                opening = self.next()
                return _Vec(name, self.time_index(tok, opening), tok.column)
            raise self.error(tok, f"unknown function {name!r}; known: {_known_functions()} "
                                  f"(a vector is written {name}(t) or {name}(t-1); {_WEIGHT_USE})")
        if self.is_op("["):
            opening = self.next()
            parts = [self.sum()]
            while self.is_op(","):
                self.next()
                parts.append(self.sum())
            self.close("]", opening)
            return _Weight(name, tuple(parts), tok.column)
        following = self.peek()
        if (following.kind == "name" and following.text != "t" and _function(following.text) is None
                and self.is_op("(", 1)):
            vector = self.next()
            opening = self.next()
            return _Weight(name, (_Vec(vector.text, self.time_index(vector, opening), vector.column),), tok.column)
        return _Name(name, tok.column)

    def time_index(self, name: _Token, opening: _Token) -> int:
        """After ``name(``: ``t)`` gives 0, ``t-1)`` gives −1."""
        tok = self.next()
        if tok.kind != "name" or tok.text != "t":
            raise self.expected(f"'t' or 't-1' in {name.text}(…)", tok)
        if self.is_op("+") or self.is_op("-"):
            sign = self.next()
            step = self.peek()
            if sign.op == "+" or step.kind != "number" or step.text != "1":
                shown = f"t{sign.text}{step.text}" if step.kind == "number" else f"t{sign.text}…"
                raise self.error(sign, f"expected t or t-1 (a cell reads one step back), got {shown}")
            self.next()
            self.close(")", opening)
            return -1
        self.close(")", opening)
        return 0


# -- from syntax to a Cell ---------------------------------------------------
def _walk(expr: _Expr):  # noqa: ANN202 - a generator of _Expr
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        if isinstance(e, _Call):
            stack.append(e.arg)
        elif isinstance(e, _Weight):
            stack.extend(reversed(e.parts))
        elif isinstance(e, _Neg):
            stack.append(e.operand)
        elif isinstance(e, _Sum):
            stack.extend(t for _, t in reversed(e.terms))
        elif isinstance(e, _Binary):
            stack.extend((e.right, e.left))
        elif isinstance(e, _Power):
            stack.append(e.base)


def _label(expr: _Expr) -> str:
    """A readable name for a hidden node: ``G_f ⊙ c(t-1)`` → ``G_f_c``."""
    if isinstance(expr, (_Name, _Vec)):
        return expr.name
    if isinstance(expr, _Call):
        return f"{expr.entry.name}_{_label(expr.arg)}"
    if isinstance(expr, _Weight):
        return expr.weight
    names = [_label(e) for e in _walk(expr) if isinstance(e, (_Name, _Vec))]
    return "_".join(names)[:MAX_NAME_LENGTH] or "part"


class _Reader:
    """Turns parsed equations into builder calls, mapping every builder
    error to the line and column it comes from."""

    def __init__(self, text: _Text, headers: dict[str, tuple[str, int, int]], equations: list[_Equation],
                 name: str, n_lines: int) -> None:
        self.text, self.headers, self.equations = text, headers, equations
        self.name, self.n_lines = name, n_lines
        self.where: dict[str, tuple[int, int]] = {}  # builder name -> (line, column) first seen
        self.targets: dict[str, _Equation] = {}
        self.weights: dict[str, tuple[int, int]] = {}
        self.states: dict[str, tuple[int, int]] = {}
        self.input: tuple[str, int, int] | None = None
        self.reserved: set[str] = set()
        self.done: set[str] = set()  # targets of the equations read so far
        self.symbols: dict[str, sympy.Symbol] = {}

    def error(self, line: int, column: int, reason: str, node: str | None = None) -> CellError:
        return self.text.error(line, column, reason, node)

    def call(self, line: int, column: int, method, *args, **kwargs):  # noqa: ANN001, ANN201
        """Call a builder method; its CellError is given this position."""
        try:
            return method(*args, **kwargs)
        except CellError as e:
            raise self.error(line, column, e.reason, e.node) from None

    # -- the whole file ----------------------------------------------------
    def scan(self) -> None:
        """Targets, weights, states and the input, before any builder call."""
        if not self.equations:
            raise self.error(self.n_lines, 1, "expected at least one equation such as 'h(t) = tanh(W x(t) + b)'")
        for eq in self.equations:
            if eq.target in self.targets:
                first = self.targets[eq.target]
                raise self.error(eq.line, eq.column, f"{eq.target!r} is already defined on line {first.line}: "
                                                     "expected one equation per vector")
            self.targets[eq.target] = eq
            self.reserved.add(eq.target)
        for eq in self.equations:
            for e in _walk(eq.rhs):
                if isinstance(e, (_Name, _Vec)):
                    self.reserved.add(e.name)
                if isinstance(e, _Weight):
                    self.reserved.add(e.weight)
                    self.weights.setdefault(e.weight, (eq.line, e.column))
                if isinstance(e, _Vec) and e.lag == -1 and e.name not in self.states:
                    if e.name not in self.targets:
                        raise self.error(eq.line, e.column, f"{e.name}(t-1) reads a state that no equation defines: "
                                                            f"expected an equation '{e.name}(t) = …'")
                    self.states[e.name] = (eq.line, e.column)
                if isinstance(e, _Vec) and e.lag == 0 and e.name not in self.targets:
                    if self.input is None:
                        self.input = (e.name, eq.line, e.column)
                    elif self.input[0] != e.name:
                        first, line, _ = self.input
                        raise self.error(eq.line, e.column, f"{e.name}(t) is defined by no equation, and the "
                                                            f"input is already {first}(t) (line {line}): "
                                                            "a cell has one input")
        first = self.equations[0]
        if self.input is None:
            raise self.error(first.line, 1, "expected an input: a vector read as NAME(t) that no equation "
                                            "defines, such as x(t)")
        if not self.states:
            raise self.error(first.line, 1, "expected a recurrent state: a vector read as NAME(t-1), such as c(t-1)")
        self.reserved |= {f"{s}_prev" for s in self.states}

    def header(self, key: str) -> tuple[str, int, int] | None:
        return self.headers.get(key)

    def build(self) -> Cell:
        self.scan()
        name, title, summary = self.header("name"), self.header("title"), self.header("summary")
        cell_name = name[0] if name else self.name
        if not cell_name.isidentifier() or keyword.iskeyword(cell_name):
            line, col = (name[1], name[2]) if name else (1, 1)
            raise self.error(line, col, f"the cell's name {cell_name!r} is not an identifier: expected a "
                                        "'name:' header such as 'name: my_cell'")
        b = CellBuilder(cell_name, title[0] if title else "", summary[0] if summary else "", source=self.text.source)
        self.b = b
        inp, line, col = self.input
        self.symbols[inp] = self.call(line, col, b.input, inp, latex=_latex(inp))
        self.where[inp] = (line, col)
        for state, (line, col) in self.states.items():
            self.symbols[f"{state}_prev"] = self.call(line, col, b.state, state)
            self.where[f"{state}_prev"] = (line, col)
        for eq in self.equations:
            self.current = eq
            expr = self.lower(eq.rhs, root=True)
            self.where.setdefault(eq.target, (eq.line, eq.column))
            self.call(eq.line, eq.column, b.node, eq.target, expr)
            self.done.add(eq.target)
            if len(b.nodes) > MAX_NODES:
                raise self.error(eq.line, eq.column, f"too many nodes (more than {MAX_NODES})")
        output, memory = self.header("output"), self.header("memory")
        out = output[0] if output else self.equations[-1].target
        try:
            return b.build(out, memory=memory[0] if memory else None)
        except CellError as e:
            for head in (output, memory):
                if head and e.node == head[0]:
                    raise self.error(head[1], head[2], e.reason, e.node) from None
            line, col = self.where.get(e.node or "", (self.equations[0].line, 1))
            raise self.error(line, col, e.reason, e.node) from None

    # -- one expression ----------------------------------------------------
    def lower(self, expr: _Expr, root: bool = False) -> sympy.Expr:
        """The SymPy expression of ``expr``. An activation that is not the
        whole expression (``root``) gets a hidden node, as the builder gives
        it: SymPy's arithmetic then never meets a function of a compound
        argument, whose assumption queries can take seconds to answer."""
        eq = self.current
        if isinstance(expr, _Num):
            return expr.value
        if isinstance(expr, _Name):
            return self.name_symbol(expr)
        if isinstance(expr, _Vec):
            return self.vector(expr)
        if isinstance(expr, _Call):
            arg = self.lower(expr.arg)
            if not arg.free_symbols:
                raise self.error(eq.line, expr.column, f"expected a vector inside {expr.entry.name}(…), "
                                                       f"got the constant {arg}")
            value = _apply(expr.entry, arg)
            if root or value == arg:
                return value
            base = f"{expr.entry.name}_{arg.name}" if arg.is_Symbol else f"{eq.target}_{expr.entry.name}"
            return self.hidden(base, value, expr.column)
        if isinstance(expr, _Weight):
            return self.affine(expr, None)
        if isinstance(expr, _Neg):
            return -self.lower(expr.operand)
        if isinstance(expr, _Sum):
            return self.sum(expr)
        if isinstance(expr, _Binary):
            left, right = self.lower(expr.left), self.lower(expr.right)
            if expr.op == "*":
                return self.bounded(left * right, expr.column)
            if right.is_Number and right.is_zero:
                raise self.error(eq.line, expr.column, "division by zero")
            return self.bounded(left / right, expr.column)
        if isinstance(expr, _Power):
            base = self.lower(expr.base)
            if base.is_Number and base.is_zero and expr.exponent < 0:
                raise self.error(eq.line, expr.column, "division by zero (0 to a negative power)")
            bits = max([abs(r.p).bit_length() + r.q.bit_length() for r in base.atoms(sympy.Rational)] or [0])
            if bits * abs(expr.exponent) > MAX_NUMBER_BITS:
                raise self.error(eq.line, expr.column, f"number too large (beyond 2^{MAX_NUMBER_BITS})")
            result = sympy.Pow(base, sympy.Integer(expr.exponent))
            for p in result.atoms(sympy.Pow):
                if p.exp.is_Number and abs(p.exp) > MAX_POWER:
                    raise self.error(eq.line, expr.column, f"power too large: expected exponents up to {MAX_POWER}, "
                                                           f"got {p.exp}")
            return result
        raise TypeError(f"unknown syntax node {expr!r}")  # unreachable: every _Expr kind is handled above

    def bounded(self, value: sympy.Expr, column: int) -> sympy.Expr:
        if value.is_Rational and max(abs(value.p).bit_length(), value.q.bit_length()) > MAX_NUMBER_BITS:
            raise self.error(self.current.line, column, f"number too large (beyond 2^{MAX_NUMBER_BITS})")
        return value

    def later(self, name: str, column: int, written: str) -> CellError:
        """The error for a vector read before (or in) its own equation."""
        eq = self.current
        again = f" (write {name}(t-1) for its previous value)" if name in self.states else ""
        if name == eq.target:
            return self.error(eq.line, column, f"{written} is read in its own equation{again}")
        return self.error(eq.line, column, f"{written} is defined on line {self.targets[name].line}, after this "
                                           f"use: expected a vector defined on an earlier line{again}")

    def name_symbol(self, expr: _Name) -> sympy.Symbol:
        eq, name = self.current, expr.name
        if name in self.done:
            return sympy.Symbol(name)
        if name in self.targets:
            raise self.later(name, expr.column, repr(name))
        if name in self.weights:
            line, _ = self.weights[name]
            raise self.error(eq.line, expr.column, f"{name!r} is a weight (applied on line {line}): {_WEIGHT_USE}")
        if self.input is not None and name == self.input[0]:
            raise self.error(eq.line, expr.column, f"{name!r} is the input: expected {name}(t)")
        if name not in self.b.params:
            self.call(eq.line, expr.column, self.b.param, name)
            self.where.setdefault(name, (eq.line, expr.column))
        return sympy.Symbol(name)

    def vector(self, expr: _Vec) -> sympy.Symbol:
        name = expr.name
        if expr.lag == -1:
            return self.symbols[f"{name}_prev"]
        if self.input is not None and name == self.input[0]:
            return self.symbols[name]
        if name in self.done:
            return sympy.Symbol(name)
        raise self.later(name, expr.column, f"{name}(t)")

    def is_known(self, name: str) -> bool:
        """A node (defined now or later), a weight or the input: not a parameter's name."""
        is_input = self.input is not None and name == self.input[0]
        return name in self.done or name in self.targets or name in self.weights or is_input

    def is_bias(self, term: _Expr) -> bool:
        """A bare name that would be a new parameter (or an affine's bias again)."""
        if not isinstance(term, _Name):
            return False
        per_element = term.name in self.b.params and self.b.params[term.name].per_element
        return not (self.is_known(term.name) or per_element)

    def sum(self, expr: _Sum) -> sympy.Expr:
        eq = self.current
        weights = [t for s, t in expr.terms if s > 0 and isinstance(t, _Weight)]
        biases = [t for s, t in expr.terms if s > 0 and self.is_bias(t)] if weights else []
        if biases and len(weights) > 1:
            raise self.error(eq.line, biases[0].column, f"{biases[0].name!r} could be the bias of "
                                                        f"{' or '.join(w.weight for w in weights)}: expected one "
                                                        "weight on a list, W [v1, v2] + b")
        if len(biases) > 1:
            raise self.error(eq.line, biases[1].column, f"a second bias {biases[1].name!r} for {weights[0].weight} "
                                                        f"(its bias is {biases[0].name!r}): an affine node has one bias")
        total = sympy.Integer(0)
        for sign, term in expr.terms:
            if biases and term is biases[0]:
                continue
            if biases and term is weights[0]:
                value = self.affine(term, biases[0])
            else:
                value = self.lower(term)
            total = self.bounded(total + sign * value, term_column(term))
        return total

    def unique(self, base: str) -> str:
        name = base
        while name in self.reserved or name in self.b.vectors or name in self.b.params:
            name += "_"
        self.reserved.add(name)
        return name

    def affine(self, expr: _Weight, bias: _Name | None) -> sympy.Symbol:
        eq = self.current
        parts = [self.part(p, expr) for p in expr.parts]
        _, _, suffix = expr.weight.partition("_")
        target = self.unique(f"z_{suffix or eq.target}")
        symbol = self.call(eq.line, expr.column, self.b.affine, target, expr.weight, parts,
                           bias.name if bias else None)
        for name, col in ((target, expr.column), (expr.weight, expr.column)) + (
                ((bias.name, bias.column),) if bias else ()):
            self.where.setdefault(name, (eq.line, col))
        self._count(expr.column)
        return symbol

    def part(self, part: _Expr, weight: _Weight) -> sympy.Symbol:
        """One block of a weight's list: a defined vector, or a hidden node."""
        eq = self.current
        if isinstance(part, _Name) and not self.is_known(part.name):
            raise self.error(eq.line, part.column, f"expected a vector in {weight.weight} [·], got {part.name!r}, "
                                                   "which no earlier line defines (write x(t), c(t-1) or a node)")
        value = self.lower(part, root=True)
        if isinstance(value, sympy.Symbol) and value.name in self.b.vectors:
            return value
        states = [s for s in value.free_symbols if s.name in self.b.vectors
                  and self.b.vectors[s.name].role == "state_prev"]
        block = self.b.vectors[states[0].name].block if len(states) == 1 else ""
        return self.hidden(_label(part), value, term_column(part), block)

    def hidden(self, base: str, value: sympy.Expr, column: int, block: str = "") -> sympy.Symbol:
        """A hidden node for ``value``, named after ``base``."""
        name = self.unique(base)
        symbol = self.call(self.current.line, column, self.b.node, name, value, show=False, block=block)
        self.where.setdefault(name, (self.current.line, column))
        self._count(column)
        return symbol

    def _count(self, column: int) -> None:
        if len(self.b.nodes) > MAX_NODES:
            raise self.error(self.current.line, column, f"too many nodes (more than {MAX_NODES})")


def term_column(expr: _Expr) -> int:
    """The column where ``expr`` starts (its leftmost token)."""
    while isinstance(expr, (_Binary, _Power)):
        expr = expr.left if isinstance(expr, _Binary) else expr.base
    return expr.column


def _latex(name: str) -> str:
    """``x_in`` → ``x_{in}``, as the builder spells its other vectors."""
    base, _, sub = name.partition("_")
    return f"{base}_{{{sub}}}" if sub else base


# -- public API --------------------------------------------------------------
def parse_cell(text: str, source: str = "<text>", name: str | None = None) -> Cell:
    """The :class:`~derive.cell.Cell` that the ``.cell`` text describes.

    ``source`` names the text in errors and in generated files; ``name`` is
    the cell's name when the text has no ``name:`` header (default
    ``"cell"``). Raises :class:`~derive.cell.CellError`, with the line, the
    column and what was expected, for any text that is not a valid cell.
    """
    if not isinstance(text, str):
        raise CellError(f"expected the text of a .cell file (str), got {type(text).__name__}", source=source,
                        line=1, column=1)
    reader = _Text(source)
    if text.startswith("\ufeff"):
        text = text[1:]
    if len(text) > MAX_CHARS:
        line = text.count("\n", 0, MAX_CHARS) + 1
        column = MAX_CHARS - (text.rfind("\n", 0, MAX_CHARS) + 1) + 1
        raise reader.error(line, column, f"text too long: expected at most {MAX_CHARS} characters")
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        raise reader.error(MAX_LINES + 1, 1, f"too many lines: expected at most {MAX_LINES}, got {len(lines)}")
    headers: dict[str, tuple[str, int, int]] = {}
    equations: list[_Equation] = []
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_LENGTH:
            raise reader.error(number, MAX_LINE_LENGTH + 1, f"line too long: expected at most {MAX_LINE_LENGTH} "
                                                            f"characters, got {len(raw)}")
        content = raw.split("#", 1)[0]
        stripped = content.strip()
        if not stripped:
            continue
        indent = len(content) - len(content.lstrip())
        key, colon, value = stripped.partition(":")
        if colon and key.rstrip() and all(_name_char(ch, k == 0) for k, ch in enumerate(key.rstrip())):
            key = key.rstrip()
            if equations:
                raise reader.error(number, indent + 1, f"header {key!r} after an equation: expected the "
                                                       "headers first, then the equations")
            _header(reader, headers, key, value, number, indent + 1, indent + len(stripped) - len(value) + 1)
            continue
        tokens = reader.tokenize(content, number, 1)
        equations.append(_LineParser(reader, tokens, number).equation())
    return _Reader(reader, headers, equations, name or "cell", len(lines)).build()


def _header(reader: _Text, headers: dict[str, tuple[str, int, int]], key: str, value: str, line: int,
            column: int, value_column: int) -> None:
    if key not in HEADERS:
        raise reader.error(line, column, f"unknown header {key!r}: expected one of {', '.join(HEADERS)}")
    if key in headers:
        raise reader.error(line, column, f"header {key!r} given twice (first on line {headers[key][1]})")
    text = value.strip()
    value_column += len(value) - len(value.lstrip())
    if not text:
        raise reader.error(line, value_column, f"expected a value after '{key}:'")
    if key in ("name", "output", "memory"):
        if not (all(_name_char(ch, k == 0) for k, ch in enumerate(text)) and text.isidentifier()
                and not keyword.iskeyword(text) and len(text) <= MAX_NAME_LENGTH):
            raise reader.error(line, value_column, f"expected a name (letters, digits, '_') after '{key}:', "
                                                   f"got {text!r}")
    headers[key] = (text, line, value_column)


def read_cell_file(path: str | Path) -> Cell:
    """The :class:`~derive.cell.Cell` of a ``.cell`` file (UTF-8).

    The cell's name is the ``name:`` header, else the file's stem. Errors,
    unreadable files included, are one :class:`~derive.cell.CellError`
    naming the file, the line and the column.
    """
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as f:
            data = f.read(4 * MAX_CHARS + 1)
    except OSError as e:
        raise CellError(f"cannot read the file: {e.strerror or e}", source=source) from None
    if len(data) > 4 * MAX_CHARS:  # more than MAX_CHARS characters: parse_cell says where the limit falls
        return parse_cell(data.decode("utf-8", "replace"), source=source, name=path.stem)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        raise CellError(f"expected UTF-8 text, got the byte 0x{data[e.start]:02x}", source=source, line=line,
                        column=column) from None
    return parse_cell(text, source=source, name=path.stem)


__all__ = ["HEADERS", "RESERVED_PREFIX", "parse_cell", "read_cell_file"]
