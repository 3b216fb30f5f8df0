"""Diagrams of a cell, drawn from its equation graph as standalone SVG.

Nothing is drawn by hand: :func:`svg` walks ``cell.nodes``. An affine node
becomes a box ``W_r [·,·] + b_r`` fed by its parts; an elementwise node is
taken apart into its operations (σ and tanh boxes, ⊙ and + circles, a
``1−`` box for 1 − G). x(t) enters at the bottom, the previous states on
the left; the new states leave on the right to the next step, the output
at the top. Layout: longest-path layers, dummy nodes on long edges,
barycenter ordering, positions by isotonic regression, orthogonal edges
on their own tracks between layers. Same cell, same bytes.

The legend says what each gate does, read from where it acts in the
equations (:func:`gate_roles`), never from its name or the cell's. With
``state_path=True`` the paths from a previous state to its new value that
cross no matrix product are highlighted, as found in the graph.
:func:`unrolled_svg` draws the cell unrolled over a few time steps.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import sympy

from ..cell import Cell, State
from ..functions import sigmoid
from ..graph import Affine, Elementwise

LANGS: tuple[str, ...] = ("en", "fr")

# Words keyed by role, never by cell. A gate's role is read from where it
# acts in the equations (see gate_roles), not from its name.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Cell {name}: the graph of one step's equations", "sep": ": ",
        "input": "input", "prev": "previous state", "next": "to the next step", "output": "output",
        "affine": "weights on the concatenation", "gate": "logistic σ (a gate)", "act": "activation",
        "mul": "Hadamard product", "add": "sum", "oneminus": "complement", "neg": "opposite",
        "param": "times a per-element parameter", "inv": "reciprocal",
        "role_update": "update gate, weight of {new}",
        "role_update_old": "update gate, weight of {prev}; 1 − {g} weights {new}",
        "role_forget": "forget gate, share of {prev} kept", "role_input": "input gate, share of {new} let in",
        "role_output": "output gate, share of {new} let out",
        "role_reset": "relevance (reset) gate, filters what the candidate reads of {prev}", "role_gate": "gate",
        "candidate": "candidate", "d_in": "Inputs at the bottom: {}.", "d_prev": "Previous states, entering "
        "on the left: {}.", "d_next": "New states, leaving on the right to the next step: {}.",
        "d_out": "Output at the top: {}.",
        "path": "the path from {prev} to {new} that crosses no matrix product",
        "d_path": "Highlighted, the path from {prev} to {new} that crosses no matrix product: {chain}; "
        "along it the gradient is only multiplied, element by element, by {gain}.",
        "u_title": "Cell {name} unrolled over time: the same step at t = {steps}",
        "u_step": "step", "u_same": "The same parameters at every step: {}.",
        "u_desc": "Inputs {xs} enter from below, one per step. Each step reads its input and {prev} from the step "
        "before it and passes {new} on to the next; the chain starts from {first}. Outputs {ys} leave at the top.",
    },
    "fr": {
        "title": "Cellule {name}\u00a0: le graphe des équations d’un pas", "sep": "\u00a0: ",
        "input": "entrée", "prev": "état précédent", "next": "vers le pas suivant", "output": "sortie",
        "affine": "poids sur la concaténation", "gate": "logistique σ (une porte)", "act": "activation",
        "mul": "produit de Hadamard", "add": "somme", "oneminus": "complément", "neg": "opposé",
        "param": "produit par un paramètre par élément", "inv": "inverse",
        "role_update": "porte de mise à jour, poids de {new}",
        "role_update_old": "porte de mise à jour, poids de {prev}\u00a0; 1 − {g} pondère {new}",
        "role_forget": "porte d’oubli, part de {prev} gardée",
        "role_input": "porte d’entrée, part de {new} admise",
        "role_output": "porte de sortie, part de {new} émise",
        "role_reset": "porte de pertinence (reset), filtre ce que le candidat lit de {prev}", "role_gate": "porte",
        "candidate": "candidat", "d_in": "Entrées en bas\u00a0: {}.",
        "d_prev": "États précédents, entrant à gauche\u00a0: {}.",
        "d_next": "Nouveaux états, sortant à droite vers le pas suivant\u00a0: {}.",
        "d_out": "Sortie en haut\u00a0: {}.",
        "path": "le chemin de {prev} à {new} qui ne traverse aucun produit matriciel",
        "d_path": "En surbrillance, le chemin de {prev} à {new} qui ne traverse aucun produit matriciel\u00a0: "
        "{chain}\u00a0; le long de ce chemin, le gradient n’est que multiplié, élément par élément, par {gain}.",
        "u_title": "Cellule {name} déroulée dans le temps\u00a0: le même pas en t = {steps}",
        "u_step": "pas", "u_same": "Les mêmes paramètres à chaque pas\u00a0: {}.",
        "u_desc": "Les entrées {xs} arrivent par le bas, une par pas. Chaque pas lit son entrée et {prev} du pas "
        "précédent, et transmet {new} au suivant\u00a0; la chaîne part de {first}. Les sorties {ys} partent "
        "par le haut.",
    },
}

# Mid-tone fills at low opacity read on white and on Material's slate alike.
FILLS = {"affine": ("#5c6bc0", 0.22), "gate": ("#f59e0b", 0.32), "act": ("#26a69a", 0.3)}
TERMINALS = ("input", "state_in", "state_out", "output")
# The highlighted state path: a wide translucent stroke under the drawing, readable on light and dark pages.
HIGHLIGHT = 'stroke="#e8590c" stroke-opacity="0.5" stroke-width="8" stroke-linecap="round" stroke-linejoin="round"'
FONT, SMALL = 14.0, 11.0
Runs = list[tuple[str, bool]]  # (text, is subscript)


@dataclass(frozen=True)
class GateRole:
    """What a gate does, read from where it acts: ``kind`` is the key of
    its ``role_*`` words; ``prev`` and ``new`` name the vectors it weights
    (``prev`` a previous state, ``new`` the other vector of the mix)."""

    kind: str  # update, update_old, forget, input, output, reset or gate
    prev: str = ""
    new: str = ""


_KINDS = {  # the sides a gate is on -> its role; a side is (on the old state, as 1 − G)
    frozenset({(False, False), (True, True)}): "update",
    frozenset({(True, False), (False, True)}): "update_old",
    frozenset({(True, False)}): "forget",
    frozenset({(False, False)}): "input",
}


def _depends(cell: Cell) -> dict[str, set[str]]:
    """Every vector's transitive dependencies within one step."""
    deps: dict[str, set[str]] = {v: set() for v in (*cell.inputs, *(s.prev for s in cell.states))}
    for node in cell.nodes:
        direct = set(node.parts) if isinstance(node, Affine) else {
            s.name for s in node.expr.free_symbols if s.name in cell.vectors}  # per-element parameters aside
        deps[node.target] = direct.union(*(deps[d] for d in direct))
    return deps


def gate_roles(cell: Cell) -> dict[str, GateRole]:
    """The role of each gate (σ node) of ``cell``, read from its equations.

    In a new state's equation s(t) = Σ terms, a gate G (or 1 − G) that
    multiplies s(t−1) weights the old state; one that multiplies another
    vector weights that vector. On both sides (G and 1 − G), it is an update
    gate, and what G itself weights says which way it points (the thread's
    Gu weights the candidate; PyTorch's z weights the old state, so
    z = 1 − Gu). On the old state only, a forget gate; on a new vector only,
    an input gate, or an output gate when that vector is read from a new
    state. A gate that, outside the states' equations, multiplies something
    read from s(t−1) filters what the candidate sees: a relevance (reset)
    gate. Anything else is a plain gate.
    """
    deps = _depends(cell)
    prev_of = {s.name: s.prev for s in cell.states}
    roles: dict[str, GateRole] = {}
    for gate in (n.target for n in cell.nodes if isinstance(n, Elementwise) and isinstance(n.expr, sigmoid)):
        g = sympy.Symbol(gate)
        sides: dict[tuple[bool, bool], tuple[str, str, bool]] = {}  # side -> (prev, new, new read from a state)
        filtered = ""
        for node in (n for n in cell.nodes if isinstance(n, Elementwise)):
            if node.target in prev_of:
                prev = prev_of[node.target]
                for term in sympy.Add.make_args(node.expr):
                    factors = sympy.Mul.make_args(term)
                    hits = [f != g for f in factors if f in (g, 1 - g)]
                    if len(hits) != 1:
                        continue
                    rest = [f.name for f in factors if isinstance(f, sympy.Symbol) and f != g]
                    new = next((r for r in rest if r != prev), "")
                    read_from_state = bool(new) and any(d in prev_of for d in {new} | deps[new])
                    sides[(prev in rest, hits[0])] = (prev, new, read_from_state)
            else:
                for e in sympy.preorder_traversal(node.expr):
                    if isinstance(e, sympy.Mul) and g in e.args:
                        read = {d for s in e.free_symbols - {g} for d in {s.name} | deps[s.name]}
                        filtered = next((p for p in prev_of.values() if p in read), filtered)
        kind = _KINDS.get(frozenset(sides), "gate") if sides else "reset" if filtered else "gate"
        if kind == "input" and sides[(False, False)][2]:
            kind = "output"
        prev = next((v[0] for v in sides.values()), filtered)
        new = next((v[1] for (old, _), v in sides.items() if not old), "")
        roles[gate] = GateRole(kind, prev, new)
    return roles


def vector_text(cell: Cell, name: str) -> str:
    """A vector as the diagrams write it: c(t−1), h(t), Gu; a hidden
    vector by its definition, tanh(c(t)); a per-element parameter by its
    name, pf."""
    if name in cell.params:
        return cell.params[name].latex.replace("{", "").replace("}", "").replace("_", "")
    vec = cell.vectors[name]
    base = vec.latex.replace("{", "").replace("}", "").replace("_", "")
    if vec.role in ("input", "state_prev"):
        return base + ("(t−1)" if vec.time == -1 else "(t)")
    node = cell.node(name)
    if isinstance(node, Elementwise) and not node.show:
        names = {s: sympy.Symbol(vector_text(cell, s.name)) for s in node.expr.free_symbols}
        return sympy.sstr(node.expr.xreplace(names)).replace(" - ", " − ")
    return base if isinstance(node, Elementwise) and isinstance(node.expr, sigmoid) else base + "(t)"


def _runs(name: str, suffix: str = "") -> Runs:
    """``G_r`` → G with subscript r; ``W_{hx}`` → W with subscript hx."""
    base, _, sub = name.replace("{", "").replace("}", "").partition("_")
    return [r for r in [(base, False), (sub, True), (suffix, False)] if r[0]]


def _plain(runs: Runs) -> str:
    """Plain text, the way the thread writes it: Gu, h(t)."""
    return "".join(t for t, _ in runs)


def _width(runs: Runs, size: float = FONT) -> float:
    """An estimate of the rendered width (no font metrics at build time)."""
    return sum(len(t) * (0.75 if sub else 1.0) for t, sub in runs) * 0.62 * size


@dataclass
class _Node:
    """One drawn node: an operation, a terminal or a dummy on a long edge."""

    kind: str  # one of TERMINALS, affine gate act mul add oneminus neg inv param, dummy
    runs: Runs
    vector: str = ""  # the cell vector it computes, as data-node
    tag: Runs = field(default_factory=list)  # that vector's name, on the right
    caption: str = ""
    preds: list[int] = field(default_factory=list)
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    on_path: bool = False  # on a highlighted state path

    @property
    def round(self) -> bool:
        return self.kind in ("mul", "add")

    @property
    def size(self) -> tuple[float, float]:
        """Width and height of the shape itself."""
        if self.kind == "dummy" or self.round:
            return (24.0, 24.0) if self.round else (0.0, 0.0)
        pads = {"affine": (18, 28), "gate": (16, 26), "act": (16, 26)} | dict.fromkeys(TERMINALS, (18, 24))
        pad, h = pads.get(self.kind, (12, 22))
        return max(30.0, _width(self.runs) + pad), float(h)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Left, right, above, below: the room it needs around (x, y)."""
        w, h = self.size
        left = right = max(w, _width([(self.caption, False)], SMALL)) / 2
        if self.tag:
            right = w / 2 + 6 + _width(self.tag)
        cap = 15.0 if self.caption else 0.0
        return (left, right, h / 2 + cap, h / 2) if self.kind == "output" else (left, right, h / 2, h / 2 + cap)


class _Diagram:
    """The graph of one cell, layered, ordered and placed."""

    def __init__(self, cell: Cell, words: dict[str, str]) -> None:
        self.cell, self.words = cell, words
        self.nodes: list[_Node] = []
        self.make: dict[str, int] = {}  # vector name -> node that computes it
        self.roles: list[tuple[Runs, str]] = []  # (name, role) of gates and candidates
        self._build()
        self._layer()
        self._order()
        self._place()

    # -- the graph, from the equations ---------------------------------------
    def _add(self, kind: str, label: str | Runs, preds: list[int], **kw: object) -> int:
        runs = [(label, False)] if isinstance(label, str) else label
        self.nodes.append(_Node(kind, runs, preds=preds, **kw))  # type: ignore[arg-type]
        return len(self.nodes) - 1

    def _build(self) -> None:
        cell, w, vec = self.cell, self.words, self.cell.vectors
        for name in cell.inputs:
            self.make[name] = self._add("input", _runs(vec[name].latex, "(t)"), [], vector=name, caption=w["input"])
        for s in cell.states:
            runs = _runs(vec[s.prev].latex, "(t−1)")
            self.make[s.prev] = self._add("state_in", runs, [], vector=s.prev, caption=w["prev"])
        states = {s.name for s in cell.states}
        roles = gate_roles(cell)
        for node in cell.nodes:
            if isinstance(node, Affine):
                dots = f"[{','.join('·' * len(node.parts))}]" if len(node.parts) > 1 else "·"
                runs = _runs(node.weight, f" {dots}") + ([(" + ", False)] + _runs(node.bias) if node.bias else [])
                self.make[node.target] = self._add("affine", runs, [self.make[p] for p in node.parts],
                                                   vector=node.target)
                continue
            self.make[node.target] = root = self._expr(node.expr, {})
            top = self.nodes[root]
            top.vector = node.target
            gate = isinstance(node.expr, sigmoid)
            label = _runs(vec[node.target].latex, "" if gate else "(t)")
            if node.show and node.target not in states:  # a state is named by its arrow on the right
                top.tag = label
                if gate:
                    r = roles[node.target]
                    names = {k: vector_text(cell, v) if v else "" for k, v in (("prev", r.prev), ("new", r.new))}
                    self.roles.append((label, w["role_" + r.kind].format(g=_plain(label), **names)))
                elif top.kind == "act":
                    self.roles.append((label, w["candidate"]))
        out = self.make[cell.output]
        self.output = self._add("output", _runs(vec[cell.output].latex, "(t)"), [out], caption=w["output"])
        self.state_out = [(self.make[s.name], _runs(vec[s.name].latex, "(t)")) for s in cell.states]

    def _expr(self, e: sympy.Expr, memo: dict[sympy.Expr, int]) -> int:
        """The node computing subexpression ``e`` (shared within one equation)."""
        if isinstance(e, sympy.Symbol):
            return self.make[e.name]
        if e not in memo:
            memo[e] = self._op(e, memo)
        return memo[e]

    def _op(self, e: sympy.Expr, memo: dict[sympy.Expr, int]) -> int:
        const, terms = e.as_coeff_add() if isinstance(e, sympy.Add) else (0, ())
        if const != 0 and len(terms) == 1 and terms[0].could_extract_minus_sign():  # 1 − G: one node, as on paper
            return self._add("oneminus", f"{const}−", [self._expr(-terms[0], memo)])
        scale = [a for a in e.args if a.is_Symbol and a.name in self.cell.params] if isinstance(e, sympy.Mul) else []
        if len(scale) == 1 and e.as_coeff_Mul()[0] == 1:  # p ⊙ v, p a per-element parameter: one "p ⊙" box on v
            runs = _runs(self.cell.params[scale[0].name].latex) + [(" ⊙", False)]
            return self._add("param", runs, [self._expr(e / scale[0], memo)])
        if isinstance(e, sympy.Pow) and e.exp == -1:  # a division a / b: a ⊙ (1/b)
            return self._add("inv", "1/", [self._expr(e.base, memo)])
        coeff = e.as_coeff_mul()[0] if isinstance(e, sympy.Mul) else 1
        if const != 0 or coeff not in (1, -1) or not isinstance(e, (sympy.Function, sympy.Mul, sympy.Add)):
            raise ValueError(f"cell {self.cell.name!r}: no drawing for {e} ({type(e).__name__})")
        args = [self._expr(a, memo) for a in e.args if not a.is_Number]
        if isinstance(e, sympy.Function):
            return self._add("gate", "σ", args) if isinstance(e, sigmoid) else self._add("act", type(e).__name__, args)
        if isinstance(e, sympy.Add):
            return self._add("add", "+", args)
        node = self._add("mul", "⊙", args) if len(args) > 1 else args[0]
        return self._add("neg", "−", [node]) if coeff == -1 else node

    # -- layout --------------------------------------------------------------
    def _layer(self) -> None:
        """Longest path from the inputs; then operations (not the gates' own
        boxes) and previous states move up next to their first consumer.
        Previous states sharing a layer are then parted, each in a layer of
        its own (its arrow from the left margin would run through the
        other). Long edges get one dummy per (source, layer), shared by its edges."""
        succs: list[list[int]] = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            n.layer = 1 + max((self.nodes[p].layer for p in n.preds), default=-1)
            for p in n.preds:
                succs[p].append(i)
        for i in reversed(range(self.output)):  # creation order is topological
            n = self.nodes[i]
            on_affine = n.kind in ("gate", "act") and self.nodes[n.preds[0]].kind == "affine"
            fixed = n.kind in ("input", "affine") or on_affine
            if succs[i] and not fixed:
                n.layer = min(self.nodes[s].layer for s in succs[i]) - 1
        self.nodes[self.output].layer = 1 + max(n.layer for n in self.nodes[: self.output])
        while True:  # one previous state a layer: each comes in by an arrow from the left margin
            seen: dict[int, int] = {}
            clash = next(((seen[n.layer], i) for i, n in enumerate(self.nodes) if n.kind == "state_in"
                          and seen.setdefault(n.layer, i) != i), None)
            if clash is None:
                break
            keep, _ = clash  # the first one stays; everything else from its layer up moves up one
            for i, n in enumerate(self.nodes):
                if i != keep and n.layer >= self.nodes[keep].layer:
                    n.layer += 1
        self.chains: list[list[int]] = []  # a source, then its dummies upwards
        self.chain_at: dict[int, dict[int, int]] = {}  # source -> layer -> itself or its dummy there
        self.up: dict[int, list[int]] = {}
        self.down: dict[int, list[int]] = {}
        for s, targets in enumerate(succs):
            chain = {self.nodes[s].layer: s}
            for layer in range(self.nodes[s].layer + 1, max((self.nodes[t].layer for t in targets), default=0)):
                chain[layer] = self._add("dummy", [], [], layer=layer)
                self._link(chain[layer - 1], chain[layer])
            if len(chain) > 1:
                self.chains.append(list(chain.values()))
            self.chain_at[s] = chain
            for t in targets:
                self._link(chain[self.nodes[t].layer - 1], t)
        self.layers: list[list[int]] = [[] for _ in range(self.nodes[self.output].layer + 1)]
        for i, n in enumerate(self.nodes):
            self.layers[n.layer].append(i)

    def _link(self, a: int, b: int) -> None:
        self.up.setdefault(a, []).append(b)
        self.down.setdefault(b, []).append(a)

    def _order(self) -> None:
        """Barycenter sweeps (keeping the best), then swaps of neighbours
        while they remove crossings. Previous states stay leftmost and the
        nodes of new states rightmost: their side arrows cross nothing."""
        last = {i for i, _ in self.state_out}
        group = [0 if n.kind == "state_in" else 2 if i in last else 1 for i, n in enumerate(self.nodes)]
        pos = {i: k for layer in self.layers for k, i in enumerate(layer)}

        def sort(layer: list[int], nbrs: dict[int, list[int]]) -> None:
            bary = {i: sum(pos[j] for j in nbrs[i]) / len(nbrs[i]) if nbrs.get(i) else pos[i] for i in layer}
            layer.sort(key=lambda i: (group[i], bary[i], pos[i]))
            pos.update({i: k for k, i in enumerate(layer)})

        for layer in self.layers:
            sort(layer, {})
        best = (self._crossings(), [list(layer) for layer in self.layers])
        for _ in range(6):
            for layers, nbrs in ((self.layers[1:], self.down), (self.layers[-2::-1], self.up)):
                for layer in layers:
                    sort(layer, nbrs)
                best = min(best, (self._crossings(), [list(layer) for layer in self.layers]))
        crossings, self.layers = best
        improved = True
        while improved and crossings:
            improved = False
            for layer, k in [(layer, k) for layer in self.layers for k in range(len(layer) - 1)]:
                if group[layer[k]] == group[layer[k + 1]]:
                    layer[k], layer[k + 1] = layer[k + 1], layer[k]
                    now = self._crossings()
                    if now < crossings:
                        crossings, improved = now, True
                    else:
                        layer[k], layer[k + 1] = layer[k + 1], layer[k]

    def _crossings(self) -> int:
        """Edge crossings between adjacent layers, counted on the orders."""
        pos = {i: k for layer in self.layers for k, i in enumerate(layer)}
        edges = [(pos[u], pos[v], self.nodes[u].layer) for u, vs in self.up.items() for v in vs]
        return sum(a[2] == b[2] and (a[0] - b[0]) * (a[1] - b[1]) < 0 for a, b in itertools.combinations(edges, 2))

    def _seps(self, layer: list[int]) -> list[float]:
        ns = [self.nodes[i] for i in layer]
        return [a.extent[1] + b.extent[0] + (26 if a.kind != "dummy" != b.kind else 12) for a, b in zip(ns, ns[1:])]

    def _place(self) -> None:
        """x: each node as near as it can be to its neighbours' ports,
        keeping its layer's order and spacing (isotonic regression); then
        long edges straightened and sources put under a port; last, a long
        edge's dummy that would run along another source's trunk steps aside."""
        for layer in self.layers:
            for i, x in zip(layer, _pav([0.0] * len(layer), self._seps(layer))):
                self.nodes[i].x = x
        for _ in range(8):
            for layers, below in ((self.layers[1:], True), (self.layers[-2::-1], False)):
                for layer in layers:
                    aims = [[self.nodes[j].x - self._dx(i, j) for j in self.down.get(i, [])] if below else
                            [self.nodes[j].x + self._dx(j, i) for j in self.up.get(i, [])] for i in layer]
                    want = [sum(a) / len(a) if a else self.nodes[i].x for a, i in zip(aims, layer)]
                    weights = [4.0 if self.nodes[i].kind == "dummy" else 1.0 for i in layer]  # long edges straight
                    for i, x in zip(layer, _pav(want, self._seps(layer), weights)):
                        self.nodes[i].x = x
        index = {i: (layer, k) for layer in self.layers for k, i in enumerate(layer)}
        for source, *dummies in self.chains * 3:  # a chain moved may make room for another
            rooms = [self._room(*index[i]) for i in dummies]
            lo, hi = max(r[0] for r in rooms), min(r[1] for r in rooms)
            for i in dummies if lo <= hi + 0.01 else []:
                self.nodes[i].x = min(max(self.nodes[source].x, lo), max(lo, hi))
        for layer in self.layers:  # a source right under one of its ports feeds it without a bend
            for k, i in enumerate(layer):
                here = self.nodes[i].x
                ports = [self.nodes[v].x + self._dx(v, i) for v in self.up.get(i, []) if not self.nodes[i].preds]
                x = min(ports, key=lambda p: abs(p - here), default=here)
                lo, hi = self._room(layer, k)
                self.nodes[i].x = x if abs(x - here) < 32 and lo <= x <= hi else here
        for k in range(1, len(self.layers)):  # a long edge's drop never runs along another source's trunk
            for pos, i in enumerate(self.layers[k]):
                if self.nodes[i].kind != "dummy":
                    continue
                trunks = [self.nodes[j].x for j in self.layers[k - 1] if self.up.get(j) and j not in self.down.get(i, [])]
                here = self.nodes[i].x
                if all(abs(here - t) >= 4 for t in trunks):
                    continue
                lo, hi = self._room(self.layers[k], pos)
                free = [x for t in trunks for x in (t - 8, t + 8)
                        if lo <= x <= hi and all(abs(x - u) >= 4 for u in trunks)]
                self.nodes[i].x = min(free, key=lambda x: (abs(x - here), x), default=here)
        shift = 34 - min(n.x - n.extent[0] for n in self.nodes)
        for n in self.nodes:
            n.x += shift

    def _room(self, layer: list[int], k: int) -> tuple[float, float]:
        """Where the k-th node of ``layer`` may go without nearing its neighbours."""
        seps = self._seps(layer)
        lo = self.nodes[layer[k - 1]].x + seps[k - 1] if k else -1e9
        return lo, self.nodes[layer[k + 1]].x - seps[k] if k + 1 < len(layer) else 1e9

    def _dx(self, v: int, u: int) -> float:
        """Offset of the port where ``u`` enters ``v``: the bottom is shared
        in the order of the sources' x, so these edges do not cross."""
        ins = sorted(self.down[v], key=lambda j: (self.nodes[j].x, j))
        return (ins.index(u) - (len(ins) - 1) / 2) * min(12.0, (self.nodes[v].size[0] - 10) / max(1, len(ins) - 1))

    def state_path(self) -> tuple[list[State], set[int], set[tuple[int, int]]]:
        """The states with a path from their previous value to their new
        one that crosses no affine node (no matrix product), and the nodes
        and edges (source, target) of those paths: the nodes reachable from
        s(t−1) and reaching s(t), affine nodes left out."""
        succs: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for p in n.preds:
                succs.setdefault(p, []).append(i)

        def reach(start: int, step: dict[int, list[int]]) -> set[int]:
            seen, todo = {start}, [start]
            while todo:
                for j in step.get(todo.pop(), []):
                    if j not in seen and self.nodes[j].kind != "affine":
                        seen.add(j)
                        todo.append(j)
            return seen

        preds = {i: n.preds for i, n in enumerate(self.nodes)}
        states, on = [], set()
        for st in self.cell.states:
            src, dst = self.make[st.prev], self.make[st.name]
            path = reach(src, succs) & reach(dst, preds)
            if dst in path:
                states.append(st)
                on |= path
        return states, on, {(p, v) for v in on for p in self.nodes[v].preds if p in on}

    def drawn_links(self, u: int, v: int) -> list[tuple[int, int]]:
        """The drawn links of the edge u → v: through u's dummies, if any."""
        chain = self.chain_at[u]
        seq = [chain[k] for k in range(self.nodes[u].layer, self.nodes[v].layer)] + [v]
        return list(zip(seq, seq[1:]))

    def port(self, v: int, u: int) -> tuple[float, float]:
        node, dx = self.nodes[v], self._dx(v, u)
        return node.x + dx, node.y + ((144 - dx * dx) ** 0.5 if node.round else node.size[1] / 2)

    def route(self) -> tuple[list[tuple[str, bool]], list[tuple[float, float]], float]:
        """Sets every node's y; returns the edges as (path data, has an
        arrowhead), the junction dots and the bottom of the drawing."""
        gaps = [_tracks(self, [u for u in layer if any(abs(self.port(v, u)[0] - self.nodes[u].x) > 0.5
                                                        for v in self.up.get(u, []))]) for layer in self.layers[:-1]]
        y, band_bottom = 24.0, {}
        for k in reversed(range(len(self.layers))):
            ext = [self.nodes[i].extent for i in self.layers[k]]
            above, below = max(e[2] for e in ext), max(e[3] for e in ext)
            for i in self.layers[k]:
                self.nodes[i].y = y + above
            band_bottom[k] = y + above + below
            y = band_bottom[k] + (28 + 10 * max(0, len(gaps[k - 1]) - 1) if k else 0)
        edges: list[tuple[str, bool]] = []
        dots: list[tuple[float, float]] = []
        self.links: dict[tuple[int, int], str] = {}  # each drawn link on its own, for highlighting
        for k, tracks in enumerate(gaps):
            for u in self.layers[k]:
                ux, uy = self.nodes[u].x, self.nodes[u].y - self.nodes[u].size[1] / 2
                ends = [(self.port(v, u), self.nodes[v].kind != "dummy") for v in self.up.get(u, [])]
                if u not in tracks:  # straight up
                    edges += [(f"M{_f(ux)},{_f(uy)}V{_f(vy)}", head) for (_, vy), head in ends]
                    for v in self.up.get(u, []):
                        self.links[(u, v)] = f"M{_f(ux)},{_f(uy)}V{_f(self.port(v, u)[1])}"
                    continue
                # one trunk, one track, one drop per target: no segment drawn twice
                ty, xs = band_bottom[k + 1] + 14 + 10 * tracks[u], [ux] + [vx for (vx, _), _ in ends]
                for v in self.up.get(u, []):
                    vx, vy = self.port(v, u)
                    self.links[(u, v)] = f"M{_f(ux)},{_f(uy)}V{_f(ty)}H{_f(vx)}V{_f(vy)}"
                edges.append((f"M{_f(ux)},{_f(uy)}V{_f(ty)}M{_f(min(xs))},{_f(ty)}H{_f(max(xs))}", False))
                edges += [(f"M{_f(vx)},{_f(ty)}V{_f(vy)}", head) for (vx, vy), head in ends]
                dots += [(x, ty) for x in sorted(set(xs)) if min(xs) < x < max(xs)]
        return edges, dots, y


def _tracks(d: _Diagram, buses: list[int]) -> dict[int, int]:
    """A track per bus (a source whose edges bend) in a gap between two
    layers, 0 nearest the upper layer, in the order with fewest crossings."""
    drops = {u: [d.port(v, u)[0] for v in d.up[u]] for u in buses}
    span = {u: (min([d.nodes[u].x, *drops[u]]), max([d.nodes[u].x, *drops[u]])) for u in buses}

    def crossings(order: tuple[int, ...]) -> int:  # a above b: a's trunk and b's drops cross the other track
        return sum((span[b][0] < d.nodes[a].x < span[b][1]) + sum(span[a][0] < x < span[a][1] for x in drops[b])
                   for a, b in itertools.combinations(order, 2))

    buses = sorted(buses, key=lambda u: (d.nodes[u].x, u))
    best = min(itertools.permutations(buses) if len(buses) <= 6 else [tuple(buses)], key=crossings)
    return {u: t for t, u in enumerate(best)}


def _pav(want: list[float], seps: list[float], weights: list[float] | None = None) -> list[float]:
    """The positions nearest ``want`` (weighted least squares) with
    x[i+1] − x[i] ≥ seps[i]: pool-adjacent-violators on shifted values."""
    offs = list(itertools.accumulate(seps, initial=0.0))
    blocks: list[list[float]] = []  # [weighted sum, weight, count]
    for w, o, k in zip(want, offs, weights or [1.0] * len(want)):
        blocks.append([k * (w - o), k, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, k2, c = blocks.pop()
            blocks[-1] = [blocks[-1][0] + s, blocks[-1][1] + k2, blocks[-1][2] + c]
    flat = [s / k for s, k, c in blocks for _ in range(int(c))]
    return [v + o for v, o in zip(flat, offs)]


def _f(v: float) -> str:
    """A coordinate, rounded for stable output."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _text(runs: Runs, x: float, y: float, size: float = FONT, anchor: str = "middle") -> str:
    """``runs`` as one <text>, subscripts lowered with dy (portable, unlike baseline-shift)."""
    out, low = [], False
    for t, sub in runs:
        shift = ' dy="4"' if sub and not low else ' dy="-4"' if low and not sub else ""
        small = f' font-size="{_f(size * 0.75)}"' if sub else ""
        out.append(f"<tspan{shift}{small}>{escape(t)}</tspan>")
        low = sub
    return f'<text x="{_f(x)}" y="{_f(y)}" font-size="{_f(size)}" text-anchor="{anchor}">{"".join(out)}</text>'


def _node_svg(n: _Node) -> str:
    """The shape, its label, caption and tag, in a group named after the vector."""
    (w, h), stroke = n.size, ' stroke="currentColor" stroke-width="1.2"'
    if n.round:
        shape = f'<circle cx="{_f(n.x)}" cy="{_f(n.y)}" r="{_f(w / 2)}" fill="currentColor" fill-opacity="0.06"'
        shape += f"{stroke}/>"
    else:
        fill, alpha = FILLS.get(n.kind, ("currentColor", 0.0 if n.kind in TERMINALS else 0.06))
        shape = (f'<rect x="{_f(n.x - w / 2)}" y="{_f(n.y - h / 2)}" width="{_f(w)}" height="{_f(h)}" '
                 f'rx="{_f(h / 2 if n.kind in TERMINALS else 4)}" fill="{fill}" fill-opacity="{alpha}"{stroke}/>')
    parts = [shape, _text(n.runs, n.x, n.y + 5)]
    if n.caption:
        y = n.y - h / 2 - 5 if n.kind == "output" else n.y + h / 2 + 13  # the output's caption above it
        parts.append(_text([(n.caption, False)], n.x, y, SMALL))
    if n.tag:
        parts.append(_text(n.tag, n.x + w / 2 + 6, n.y + 5, anchor="start"))
    data = f' data-node="{n.vector}"' if n.vector else ""
    data += ' data-on-path="true"' if n.on_path else ""
    return f'<g class="node {n.kind}"{data}>{"".join(parts)}</g>'


def _wrap(runs: Runs, room: float, size: float) -> list[Runs]:
    """``runs`` in lines no wider than ``room`` (words of the last run wrap)."""
    if _width(runs, size) <= room or not runs or runs[-1][1]:
        return [runs]
    head, words = runs[:-1], runs[-1][0].split(" ")
    lines: list[Runs] = []
    line = ""
    for word in words:
        trial = f"{line} {word}" if line else word
        if line and _width([*(head if not lines else []), (trial, False)], size) > room:
            lines.append([*(head if not lines else []), (line, False)])
            line = word
        else:
            line = trial
    return [*lines, [*(head if not lines else []), (line, False)]]


def _legend(d: _Diagram, w: dict[str, str], top: float, width: float,
            paths: Sequence[str] = ()) -> tuple[list[str], float]:
    """Swatches of the kinds of node drawn, then (on a new line) the role
    of each gate and candidate, then the highlighted paths' swatch; wrapped
    to ``width``. Returns the end y."""
    kinds = ("affine", "gate", "act", "mul", "add", "oneminus", "neg", "inv", "param")
    first = {k: next((n for n in d.nodes if n.kind == k), None) for k in kinds}
    swatches = [_Node(k, [("W", False)] if k == "affine" else n.runs) for k, n in first.items() if n]
    groups = [[(n, [(w[n.kind], False)]) for n in swatches],
              [(None, r + [(w["sep"] + role, False)]) for r, role in d.roles],
              [("path", [(text, False)]) for text in paths]]
    out, y = ['<g class="legend">'], top
    for group in filter(None, groups):
        x = 12.0
        for n, runs in group:
            sw = 36.0 if n == "path" else n.size[0] + 8 if n else 0.0
            lines = _wrap(runs, width - 12 - x - sw, 12)
            if x > 12 and (len(lines) > 1 or x + sw + _width(runs, 12) > width - 12):
                x, y = 12.0, y + 30
                lines = _wrap(runs, width - 12 - x - sw, 12)
            if n == "path":
                out.append(f'<path d="M{_f(x)},{_f(y)}H{_f(x + 28)}" fill="none" {HIGHLIGHT}/>')
            elif n:
                n.x, n.y = x + n.size[0] / 2, y
                out.append(_node_svg(n))
            out += [_text(line, x + sw, y + 4 + 18 * k, 12, "start") for k, line in enumerate(lines)]
            if len(lines) > 1:  # the next item on a line of its own
                x, y = 12.0, y + 18 * (len(lines) - 1) + 30
            else:
                x += sw + _width(runs, 12) + 24
        y += 30 if x > 12 else 0
    return out + ["</g>"], y - 6


def _expr_text(cell: Cell, expr: sympy.Expr) -> str:
    """An element-wise expression in the diagrams' plain notation: 1 − Gu."""
    names = {s: sympy.Symbol(vector_text(cell, s.name)) for s in expr.free_symbols}
    return sympy.sstr(expr.xreplace(names)).replace(" - ", " − ").replace("*", " ⊙ ")


def direct_gain(cell: Cell, state: State) -> sympy.Expr:
    """∂s(t)/∂s(t−1) along the paths that cross no matrix product: the
    element-wise factor by which the gradient flows along the state path
    (1 − Gu for the GRU, Gf for the LSTM's c). Every element-wise node is
    substituted, the affine nodes' outputs kept as opaque symbols, and the
    shown vectors put back in the result."""
    defs: dict[sympy.Symbol, sympy.Expr] = {}
    for node in cell.nodes:
        if isinstance(node, Elementwise):
            defs[sympy.Symbol(node.target)] = node.expr.xreplace(defs)
    gain = sympy.diff(defs[sympy.Symbol(state.name)], sympy.Symbol(state.prev))
    shown = {defs[sympy.Symbol(n.target)]: sympy.Symbol(n.target) for n in cell.nodes
             if isinstance(n, Elementwise) and n.show and n.target != state.name}
    return gain.xreplace(shown)


def _outline(n: _Node, pad: float = 0.0) -> str:
    """The outline of a node's shape, for the highlight drawn under it."""
    w, h = n.size
    if n.round:
        return f'<circle cx="{_f(n.x)}" cy="{_f(n.y)}" r="{_f(w / 2 + pad)}"/>'
    return (f'<rect x="{_f(n.x - w / 2 - pad)}" y="{_f(n.y - h / 2 - pad)}" width="{_f(w + 2 * pad)}" '
            f'height="{_f(h + 2 * pad)}" rx="{_f(h / 2 + pad if n.kind in TERMINALS else 4 + pad)}"/>')


def svg(cell: Cell, lang: str = "en", *, state_path: bool = False) -> str:
    """The diagram of ``cell`` as a standalone SVG string labelled in
    ``lang`` ("en" or "fr"): deterministic, no external reference, sized
    to its content and as wide as its container allows.

    With ``state_path``, the paths from each previous state to its new
    value that cross no matrix product (Olah's "conveyor belt": the
    gradient flows along them multiplied only element-wise) are
    highlighted; which nodes and edges lie on them is computed from the
    graph (:meth:`_Diagram.state_path`). A cell with no such path is a
    ``ValueError``."""
    if lang not in WORDS:
        raise ValueError(f"lang: expected one of {', '.join(map(repr, LANGS))}, got {lang!r}")
    if not isinstance(state_path, bool):
        raise ValueError(f"state_path: expected True or False, got {state_path!r}")
    w = WORDS[lang]
    d = _Diagram(cell, w)
    edges, dots, bottom = d.route()
    right = max(n.x + n.extent[1] for n in d.nodes) + 40
    ends = [_Node("state_out", runs, caption=w["next"], y=d.nodes[i].y) for i, runs in d.state_out]
    sides: dict[int, str] = {}  # node -> its arrow from the left or to the right
    for (i, _), end in zip(d.state_out, ends):  # new states leave on the right, to the next step
        end.x = right + end.extent[0]
        sides[i] = f"M{_f(d.nodes[i].x + d.nodes[i].size[0] / 2)},{_f(end.y)}H{_f(end.x - end.size[0] / 2)}"
        edges.append((sides[i], True))
    for i, n in enumerate(d.nodes):
        if n.kind == "state_in":
            sides[i] = f"M4,{_f(n.y)}H{_f(n.x - n.size[0] / 2)}"
            edges.append((sides[i], True))
    width = max([380.0] + [e.x + e.extent[1] + 12 for e in ends])
    highlight, path_words, path_desc = [], [], []
    if state_path:
        states, on, links = d.state_path()
        if not states:
            pairs = ", ".join(f"{vector_text(cell, s.prev)} → {vector_text(cell, s.name)}" for s in cell.states)
            raise ValueError(f"state_path: cell {cell.name!r} has no path {pairs} that avoids a matrix product, "
                             "so there is nothing to highlight")
        for u, v in sorted(links):  # one path per edge, through its dummies: no joint drawn twice
            pieces = [d.links[link] for link in d.drawn_links(u, v)]
            highlight.append(f'<path d="{pieces[0]}{"".join(re.sub(r"^M[^A-Z]*", "", p) for p in pieces[1:])}"/>')
        ends_on = [end for (i, _), end in zip(d.state_out, ends) if i in on]
        highlight += [f'<path d="{sides[i]}"/>' for i in sorted(on) if i in sides]
        highlight += [_outline(n) for n in [d.nodes[i] for i in sorted(on)] + ends_on]
        for n in [d.nodes[i] for i in on] + ends_on:
            n.on_path = True
        for st in states:
            names = {"prev": vector_text(cell, st.prev), "new": vector_text(cell, st.name)}
            chain = [names["prev"], *(d.nodes[i].runs[0][0] for i in sorted(on)
                                      if d.nodes[i].kind in ("mul", "add", "oneminus", "neg", "act", "gate", "param", "inv")
                                      and _reaches(d, d.make[st.prev], i) and _reaches(d, i, d.make[st.name])),
                     names["new"]]
            path_words.append(w["path"].format(**names))
            path_desc.append(w["d_path"].format(chain=" → ".join(chain), gain=_expr_text(cell, direct_gain(cell, st)),
                                                **names))
    legend, height = _legend(d, w, bottom + 26, width, path_words)
    desc = " ".join([
        w["d_in"].format(", ".join(_plain(d.nodes[d.make[x]].runs) for x in cell.inputs)),
        w["d_prev"].format(", ".join(_plain(d.nodes[d.make[s.prev]].runs) for s in cell.states)),
        *(f"{_plain(r)}{w['sep']}{role}." for r, role in d.roles),
        w["d_next"].format(", ".join(_plain(r) for _, r in d.state_out)),
        w["d_out"].format(_plain(d.nodes[d.output].runs)),
        *path_desc,
    ])
    uid = f"derive-{cell.name}-{lang}" + ("-path" if state_path else "")
    arrow = f"{uid}-arrow"
    title = w["title"].format(name=cell.name) + (w["sep"] + path_words[0] if len(path_words) == 1 else "")
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_f(width)} {_f(height)}" width="100%" '
        f'style="max-width:{_f(width * 1.15)}px;height:auto;--derive-width:{_f(width)}px" role="img" '
        f'aria-labelledby="{uid}-title {uid}-desc" font-family="system-ui, sans-serif" fill="currentColor">',
        f'<title id="{uid}-title">{escape(title)}</title>',
        f'<desc id="{uid}-desc">{escape(desc)}</desc>',
        _marker(arrow),
        *([f'<g class="state-path" fill="none" {HIGHLIGHT}>', *highlight, "</g>"] if highlight else []),
        '<g class="edges" fill="none" stroke="currentColor" stroke-width="1.4">',
        *(f'<path d="{p}"' + (f' marker-end="url(#{arrow})"' if head else "") + "/>" for p, head in edges),
        "</g>",
        '<g class="junctions">', *(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="2.5"/>' for x, y in dots), "</g>",
        '<g class="nodes">', *(_node_svg(n) for n in d.nodes + ends if n.kind != "dummy"), "</g>",
        *legend,
        "</svg>",
        "",
    ])


def _reaches(d: _Diagram, a: int, b: int) -> bool:
    """Whether node ``b`` is reached from node ``a`` along the edges."""
    todo, seen = [b], {b}
    while todo:
        i = todo.pop()
        if i == a:
            return True
        for p in d.nodes[i].preds:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return False
    uid = f"derive-{cell.name}-{lang}"
    arrow = f"{uid}-arrow"
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_f(width)} {_f(height)}" width="100%" '
        f'style="max-width:{_f(width * 1.15)}px;height:auto" role="img" aria-labelledby="{uid}-title {uid}-desc" '
        'font-family="system-ui, sans-serif" fill="currentColor">',
        f'<title id="{uid}-title">{escape(w["title"].format(name=cell.name))}</title>',
        f'<desc id="{uid}-desc">{escape(desc)}</desc>',
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,1L10,5L0,9z" fill="currentColor"/>'
        "</marker></defs>",
        '<g class="edges" fill="none" stroke="currentColor" stroke-width="1.4">',
        *(f'<path d="{p}"' + (f' marker-end="url(#{arrow})"' if head else "") + "/>" for p, head in edges),
        "</g>",
        '<g class="junctions">', *(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="2.5"/>' for x, y in dots), "</g>",
        '<g class="nodes">', *(_node_svg(n) for n in d.nodes + ends if n.kind != "dummy"), "</g>",
        *legend,
        "</svg>",
        "",
    ])


def _marker(arrow: str) -> str:
    return (f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
            'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,1L10,5L0,9z" fill="currentColor"/>'
            "</marker></defs>")


def unrolled_svg(cell: Cell, lang: str = "en", steps: int = 3) -> str:
    """``cell`` unrolled over ``steps`` time steps as a standalone SVG:
    one box per step (the same cell, the same parameters), its input
    x(t) entering from below, its output leaving at the top, and each of
    its states passed on to the next step, from s(0) on the left to "…"
    on the right. Everything named comes from the cell: its inputs,
    states, output and parameters."""
    if lang not in WORDS:
        raise ValueError(f"lang: expected one of {', '.join(map(repr, LANGS))}, got {lang!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 9:
        raise ValueError(f"steps: expected an integer from 1 to 9, got {steps!r}")
    w = WORDS[lang]
    vec = cell.vectors

    def at(name: str, t: int | str) -> Runs:
        return _runs(vec[name].latex, f"({t})")

    def pill(kind: str, runs: Runs, x: float, y: float, **kw: object) -> _Node:
        node = _Node(kind, runs, x=x, y=y, **kw)  # type: ignore[arg-type]
        nodes.append(node)
        return node

    states, k = cell.states, len(cell.states)
    box_w = max(88.0, _width([(cell.name, False)]) + 28)
    box_h = max(64.0, 30.0 * k + 26)
    gap = max(76.0, max(_width(at(s.name, steps), 12) for s in states) + 44)
    first_w = max(_Node("state_in", at(s.name, 0)).size[0] for s in states)
    x0, top = 12 + first_w + 42, 84.0
    lane = [top + (i + 1) * box_h / (k + 1) for i in range(k)]
    nodes: list[_Node] = []
    edges: list[str] = []
    labels: list[str] = []
    for i, s in enumerate(states):  # the chain starts from s(0)
        start = pill("state_in", at(s.name, 0), 12 + first_w / 2, lane[i], vector=s.prev)
        edges.append(f"M{_f(start.x + start.size[0] / 2)},{_f(lane[i])}H{_f(x0)}")
    for t in range(1, steps + 1):
        left = x0 + (t - 1) * (box_w + gap)
        cx, bottom = left + box_w / 2, top + box_h
        nodes.append(_Node("step", [], x=cx, y=top + box_h / 2))
        labels.append(_text([(cell.name, False)], cx, top + box_h / 2 - 2))
        labels.append(_text([(f"t = {t}", False)], cx, top + box_h / 2 + 16, SMALL))
        for j, name in enumerate(cell.inputs):
            dx = (j - (len(cell.inputs) - 1) / 2) * 40
            node = pill("input", at(name, t), cx + dx, bottom + 46, vector=name)
            edges.append(f"M{_f(cx + dx)},{_f(node.y - node.size[1] / 2)}V{_f(bottom)}")
        out = pill("output", at(cell.output, t), cx, top - 46, vector=cell.output)
        edges.append(f"M{_f(cx)},{_f(top)}V{_f(out.y + out.size[1] / 2)}")
        for i, s in enumerate(states):  # s(t) to the next step, named over its arrow
            end = left + box_w + gap if t < steps else left + box_w + 44
            edges.append(f"M{_f(left + box_w)},{_f(lane[i])}H{_f(end)}")
            if t < steps:
                labels.append(_text(at(s.name, t), left + box_w + gap / 2, lane[i] - 6, 12))
    right = x0 + steps * (box_w + gap) - gap + 44
    labels.append(_text([("…", False)], right + 12, top + box_h / 2 + 5))
    params = [r for p in cell.params for r in [*_runs(p), (", ", False)]][:-1]
    same = _runs("") + [(w["u_same"].split("{}")[0], False), *params, (w["u_same"].split("{}")[1], False)]
    width = max(right + 40, 24 + _width(same, 12))
    caption_y = top + box_h + 46 + 12 + 30
    labels.append(_text(same, 12, caption_y, 12, "start"))
    plain = {
        "xs": ", ".join(_plain(at(x, t)) for t in range(1, steps + 1) for x in cell.inputs),
        "prev": ", ".join(_plain(at(s.prev, "t−1")) for s in states),
        "new": ", ".join(_plain(at(s.name, "t")) for s in states),
        "first": ", ".join(_plain(at(s.prev, 0)) for s in states),
        "ys": ", ".join(_plain(at(cell.output, t)) for t in range(1, steps + 1)),
    }
    desc = w["u_desc"].format(**plain) + " " + w["u_same"].format(_plain(params))
    uid = f"derive-{cell.name}-{lang}-unrolled"
    arrow = f"{uid}-arrow"
    height = caption_y + 14
    shapes, (fill, alpha) = [], FILLS["affine"]
    for n in nodes:
        if n.kind == "step":
            shapes.append(f'<g class="node step"><rect x="{_f(n.x - box_w / 2)}" y="{_f(top)}" width="{_f(box_w)}" '
                          f'height="{_f(box_h)}" rx="6" fill="{fill}" fill-opacity="{alpha}" '
                          'stroke="currentColor" stroke-width="1.2"/></g>')
        else:
            shapes.append(_node_svg(n))
    steps_text = ", ".join(str(t) for t in range(1, steps + 1))
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_f(width)} {_f(height)}" width="100%" '
        f'style="max-width:{_f(width * 1.15)}px;height:auto;--derive-width:{_f(width)}px" role="img" '
        f'aria-labelledby="{uid}-title {uid}-desc" font-family="system-ui, sans-serif" fill="currentColor">',
        f'<title id="{uid}-title">{escape(w["u_title"].format(name=cell.name, steps=steps_text))}</title>',
        f'<desc id="{uid}-desc">{escape(desc)}</desc>',
        _marker(arrow),
        '<g class="edges" fill="none" stroke="currentColor" stroke-width="1.4">',
        *(f'<path d="{p}" marker-end="url(#{arrow})"/>' for p in edges),
        "</g>",
        '<g class="nodes">', *shapes, "</g>",
        '<g class="labels">', *labels, "</g>",
        "</svg>",
        "",
    ])
