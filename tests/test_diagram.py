"""The SVG diagrams: drawn from each cell's equation graph, in both languages.

Counts are computed from the cells' equations, never typed here; the
geometry checks (no shapes overlapping, no edge through a shape, every
arrowhead on a shape) read the coordinates back from the SVG.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import sympy

import derive
from derive.cell import Cell, CellBuilder
from derive.functions import relu, sigmoid
from derive.graph import Affine, Elementwise
from derive.render.diagram import LANGS, WORDS, gate_roles, svg, unrolled_svg

NS = {"s": "http://www.w3.org/2000/svg"}
CASES = [(name, lang) for name in derive.NAMES for lang in LANGS]


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def nodes(root: ET.Element) -> list[ET.Element]:
    """The drawn nodes of the graph (the legend's swatches excluded)."""
    return root.findall("s:g[@class='nodes']/s:g", NS)


def of_kind(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in nodes(root) if g.get("class") == f"node {kind}"]


def text(elem: ET.Element) -> str:
    return "".join(elem.itertext())


def subexpressions(cell: Cell) -> list[sympy.Expr]:
    return [e for n in cell.nodes if isinstance(n, Elementwise) for e in sympy.preorder_traversal(n.expr)]


def hadamard_products(cell: Cell) -> int:
    """Products of two or more vectors in the cell's elementwise equations."""
    return sum(isinstance(e, sympy.Mul) and sum(not a.is_Number and getattr(a, "name", "") not in cell.params
                                                for a in e.args) > 1 for e in subexpressions(cell))


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_parses_with_title_and_description(name: str, lang: str) -> None:
    root = parse(svg(derive.cell(name), lang))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("width") == "100%" and len(root.get("viewBox").split()) == 4
    title, desc = root.find("s:title", NS), root.find("s:desc", NS)
    assert title is not None and name in title.text
    assert desc is not None and len(desc.text) > 60
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_standalone_and_theme_neutral(name: str, lang: str) -> None:
    s = svg(derive.cell(name), lang)
    assert not re.search(r"href|<image|@import|@font-face|url\((?!#)", s)
    assert re.findall(r"https?://[^\"]*", s) == ["http://www.w3.org/2000/svg"]
    assert "\n\n" not in s  # a blank line would end a raw HTML block in Markdown
    # Lines and text follow the page's colour (light or dark); fills are translucent tints.
    for elem in parse(s).iter():
        assert elem.get("stroke") in (None, "currentColor", "none")
        if elem.get("fill") not in (None, "none", "currentColor"):
            assert re.fullmatch(r"#[0-9a-f]{6}", elem.get("fill")) and float(elem.get("fill-opacity")) < 0.4
        if elem.tag.endswith("text"):
            assert elem.get("fill") is None


def test_deterministic_across_calls_and_processes() -> None:
    here = {(n, lang): svg(derive.cell(n), lang) for n, lang in CASES}
    assert here == {(n, lang): svg(derive.cell(n), lang) for n, lang in CASES}
    code = (
        "import json, derive\nfrom derive.render.diagram import svg\n"
        f"print(json.dumps([svg(derive.cell(n), l) for n, l in {CASES!r}]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [here[c] for c in CASES]


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_a_node_for_every_vector_and_operation(name: str, lang: str) -> None:
    cell = derive.cell(name)
    root = parse(svg(cell, lang))
    drawn = {g.get("data-node"): g for g in nodes(root) if g.get("data-node")}
    assert len(drawn) == sum(1 for g in nodes(root) if g.get("data-node"))  # one node per vector
    for vector in [*cell.inputs, *(s.prev for s in cell.states), *(n.target for n in cell.nodes)]:
        assert vector in drawn, vector
    for node in cell.nodes:
        if isinstance(node, Affine):  # "W_r [·,·] + b_r": weight and bias, subscripts as tspans
            label = text(drawn[node.target])
            assert node.weight.replace("_", "") in label and node.bias.replace("_", "") in label
    subs = subexpressions(cell)
    assert len(of_kind(root, "mul")) == hadamard_products(cell)
    assert hadamard_products(cell) >= (1 if any(isinstance(e, sigmoid) for e in subs) else 0)  # not vacuous
    assert len(of_kind(root, "gate")) == sum(isinstance(e, sigmoid) for e in subs)
    assert len(of_kind(root, "act")) == sum(isinstance(e, sympy.Function) and not isinstance(e, sigmoid) for e in subs)
    assert len(of_kind(root, "add")) == sum(isinstance(e, sympy.Add) and e.as_coeff_add()[0] == 0 for e in subs)
    assert len(of_kind(root, "oneminus")) == sum(isinstance(e, sympy.Add) and e.as_coeff_add()[0] == 1 for e in subs)
    assert len(of_kind(root, "state_in")) == len(of_kind(root, "state_out")) == len(cell.states)
    assert len(of_kind(root, "input")) == len(cell.inputs) and len(of_kind(root, "output")) == 1


@pytest.mark.parametrize(("name", "lang"), CASES)
def test_shown_vectors_are_named_and_hidden_ones_are_not(name: str, lang: str) -> None:
    cell = derive.cell(name)
    root = parse(svg(cell, lang))
    drawn = {g.get("data-node"): g for g in nodes(root) if g.get("data-node")}
    states = {s.name for s in cell.states}
    for node in cell.nodes:
        if isinstance(node, Elementwise):
            tags = [text(t) for t in drawn[node.target].findall("s:text", NS)[1:]]
            named = node.show and node.target not in states
            assert bool(tags) == named, node.target
            if named:
                assert tags[0].startswith(cell.vectors[node.target].latex.replace("_", ""))
    ends = [text(g) for g in of_kind(root, "state_out")]
    assert ends == [f"{cell.vectors[s.name].latex}(t){WORDS[lang]['next']}" for s in cell.states]


@pytest.mark.parametrize("name", derive.NAMES)
def test_labels_in_the_page_language(name: str) -> None:
    en, fr = (text(parse(svg(derive.cell(name), lang))) for lang in ("en", "fr"))  # what a reader sees
    gated = any(isinstance(e, sigmoid) for e in subexpressions(derive.cell(name)))
    for key in ("input", "prev", "next", "output", "affine") + (("gate", "mul") if gated else ()):
        assert WORDS["fr"][key] in fr and WORDS["fr"][key] not in en, key
        assert WORDS["en"][key] in en and WORDS["en"][key] not in fr, key
    assert "Cellule" in fr and "Entrées en bas" in fr and "Cell " in en and "Inputs at the bottom" in en


def test_gate_roles_come_from_where_the_gates_act() -> None:
    roles = {name: text(parse(svg(derive.cell(name))).find("s:g[@class='legend']", NS)) for name in derive.NAMES}
    assert "Gu: update gate" in roles["gru_simple"] and "Gr" not in roles["gru_simple"]
    assert "Gr: relevance (reset) gate" in roles["gru"]
    assert "Gz: update gate, weight of c(t−1); 1 − Gz weights h(t)" in roles["gru_torch"]
    assert all(f"G{g}: {r} gate" in roles["lstm"] for g, r in (("i", "input"), ("f", "forget"), ("o", "output")))
    assert "porte d’oubli" in svg(derive.cell("lstm"), "fr")
    # "1 − G weights" is said only of a gate that weights the old state, naming that gate (no cell's Gu)
    assert [name for name, legend in roles.items() if "weights h(t)" in legend] == ["gru_torch"]


def test_unknown_language_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'en', 'fr'.*'de'"):
        svg(derive.cell("gru"), "de")


def gated_rnn(extra_gate: bool) -> Cell:
    """A small cell built here: a plain RNN, or one with a gate Gq mixing
    the candidate with the previous state."""
    b = CellBuilder("tiny", "Tiny", "A test cell.")
    x, a_prev = b.input("x"), b.state("a")
    if not extra_gate:
        b.node("a", sympy.tanh(b.affine("z_a", "W_a", [a_prev, x], "b_a")))
        return b.build(output="a")
    q = b.node("Gq", sigmoid(b.affine("z_q", "W_q", [a_prev, x], "b_q")), latex="G_q")
    h = b.node("h", sympy.tanh(b.affine("z_a", "W_a", [a_prev, x], "b_a")))
    b.node("a", q * h + (1 - q) * a_prev)
    return b.build(output="a")


def test_a_modified_cell_changes_the_drawing() -> None:
    plain, gated = svg(gated_rnn(False)), svg(gated_rnn(True))
    assert plain != gated
    p, g = parse(plain), parse(gated)
    assert (len(of_kind(p, "mul")), len(of_kind(g, "mul"))) == (0, 2)
    assert (len(of_kind(p, "gate")), len(of_kind(g, "gate"))) == (0, 1)
    assert "Wq" not in text(p) and "Wq" in text(g)
    # a gate letter the words do not know: its role is read from the equation (Gq weights the candidate)
    assert "Gq: update gate, weight of h(t)" in text(g.find("s:g[@class='legend']", NS))


def test_an_operation_it_cannot_draw_is_an_error() -> None:
    b = CellBuilder("squares", "Squares", "A cell with a power.")
    x, a_prev = b.input("x"), b.state("a")
    h = b.node("h", sympy.tanh(b.affine("z_a", "W_a", [a_prev, x], "b_a")))
    b.node("a", h**2)
    with pytest.raises(ValueError, match="no drawing for h\\*\\*2"):
        svg(b.build(output="a"))


# -- geometry ---------------------------------------------------------------
Box = tuple[float, float, float, float, bool]  # x0, y0, x1, y1, is a circle


def shapes(root: ET.Element) -> list[Box]:
    out = []
    for g in nodes(root):
        for r in g.findall("s:rect", NS):
            x, y, w, h = (float(r.get(k)) for k in ("x", "y", "width", "height"))
            out.append((x, y, x + w, y + h, False))
        for c in g.findall("s:circle", NS):
            cx, cy, r = (float(c.get(k)) for k in ("cx", "cy", "r"))
            out.append((cx - r, cy - r, cx + r, cy + r, True))
    return out


def segments(d: str) -> list[tuple[float, float, float, float]]:
    """The axis-parallel segments of a path made of M, H and V commands."""
    segs, x, y = [], 0.0, 0.0
    for cmd, a, b in re.findall(r"([MHV])(-?[\d.]+)(?:,(-?[\d.]+))?", d):
        if cmd == "M":
            x, y = float(a), float(b)
            continue
        nx, ny = (float(a), y) if cmd == "H" else (x, float(a))
        segs.append((x, y, nx, ny))
        x, y = nx, ny
    return segs


def enters(seg: tuple[float, float, float, float], box: Box) -> bool:
    """Whether the segment passes through the inside of the shape (touching its outline is fine)."""
    x0, y0, x1, y1, round_ = box
    lo_x, hi_x, lo_y, hi_y = min(seg[0], seg[2]), max(seg[0], seg[2]), min(seg[1], seg[3]), max(seg[1], seg[3])
    if round_:
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
        if lo_x == hi_x:  # vertical: the chord at that x
            half = math.sqrt(max(0.0, r * r - (lo_x - cx) ** 2))
            return half > 0.6 and lo_y < cy + half - 0.6 and hi_y > cy - half + 0.6
        half = math.sqrt(max(0.0, r * r - (lo_y - cy) ** 2))
        return half > 0.6 and lo_x < cx + half - 0.6 and hi_x > cx - half + 0.6
    return lo_x < x1 - 0.6 and hi_x > x0 + 0.6 and lo_y < y1 - 0.6 and hi_y > y0 + 0.6


def three_states() -> Cell:
    """A cell whose three previous states are all read element-wise by one
    node (its new states computed in three different layers)."""
    b = CellBuilder("three", "Three", "A test cell.")
    x, a, c, m = b.input("x"), b.state("a"), b.state("c"), b.state("m")
    g = b.node("g", sigmoid(b.affine("z", "W", [x], "b")))
    b.node("a", g * a + c * m)
    b.node("c", g * c)
    b.node("m", sigmoid(g * m + a))
    return b.build(output="a")


LAYOUT_CELLS = [pytest.param(derive.cell(name), id=name) for name in derive.NAMES]
LAYOUT_CELLS.append(pytest.param(three_states(), id="three-states"))


@pytest.mark.parametrize("cell", LAYOUT_CELLS)
def test_each_previous_state_has_a_layer_of_its_own(cell: Cell) -> None:
    """Previous states come in by arrows from the left margin: two in one
    layer (the peephole LSTM's a(t−1) and c(t−1)) would be drawn on one line."""
    from derive.render.diagram import _Diagram

    layers = [n.layer for n in _Diagram(cell, WORDS["en"]).nodes if n.kind == "state_in"]
    assert len(set(layers)) == len(layers) == len(cell.states), layers


@pytest.mark.parametrize("cell", LAYOUT_CELLS)
def test_no_overlaps_and_arrows_land_on_shapes(cell: Cell) -> None:
    root = parse(svg(cell))
    boxes = shapes(root)
    _, _, width, height = map(float, root.get("viewBox").split())
    assert all(0 <= b[0] and b[2] <= width and 0 <= b[1] and b[3] <= height for b in boxes)
    for a, b in itertools.combinations(boxes, 2):
        assert a[2] + 4 <= b[0] or b[2] + 4 <= a[0] or a[3] + 4 <= b[1] or b[3] + 4 <= a[1], (a, b)
    paths = root.findall("s:g[@class='edges']/s:path", NS)
    assert len(paths) > 3
    for p in paths:
        segs = segments(p.get("d"))
        for seg, box in itertools.product(segs, boxes):
            assert not enters(seg, box), (p.get("d"), box)
        if p.get("marker-end"):  # the tip touches a shape's outline
            x, y = segs[-1][2], segs[-1][3]
            assert any(touches(x, y, box) for box in boxes), p.get("d")


def touches(x: float, y: float, box: Box) -> bool:
    x0, y0, x1, y1, round_ = box
    if round_:
        return abs(math.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2) - (x1 - x0) / 2) < 0.6
    on_h = x0 - 0.1 <= x <= x1 + 0.1 and min(abs(y - y0), abs(y - y1)) < 0.6
    on_v = y0 - 0.1 <= y <= y1 + 0.1 and min(abs(x - x0), abs(x - x1)) < 0.6
    return on_h or on_v


@pytest.mark.parametrize("cell", LAYOUT_CELLS)
def test_no_two_edges_drawn_on_top_of_each_other(cell: Cell) -> None:
    """Collinear pieces of different edges would be read as one wire."""
    segs = [s for p in parse(svg(cell)).findall("s:g[@class='edges']/s:path", NS)
            for s in segments(p.get("d"))]
    for a, b in itertools.combinations(segs, 2):
        for axis in (0, 1):  # 0: vertical pieces (same x), 1: horizontal ones (same y)
            other = 1 - axis
            if a[axis] == a[axis + 2] and b[axis] == b[axis + 2] and abs(a[axis] - b[axis]) < 1:
                overlap = min(max(a[other], a[other + 2]), max(b[other], b[other + 2])) - max(
                    min(a[other], a[other + 2]), min(b[other], b[other + 2]))
                assert overlap < 1, (a, b)


def mixing_cell(gate: str, keeps_old: bool) -> Cell:
    """A GRU-like cell whose one gate (named ``gate``) weights either the
    candidate (as the thread's Gu) or the old state (as PyTorch's z)."""
    b = CellBuilder("mix", "Mix", "A test cell.")
    x, a_prev = b.input("x"), b.state("a")
    q = b.node(gate, sigmoid(b.affine("z_q", "W_q", [a_prev, x], "b_q")), latex=gate.replace("G", "G_"))
    h = b.node("h", sympy.tanh(b.affine("z_a", "W_a", [a_prev, x], "b_a")))
    b.node("a", (1 - q) * h + q * a_prev if keeps_old else q * h + (1 - q) * a_prev)
    return b.build(output="a")


@pytest.mark.parametrize("gate", ["Gz", "Gu", "Gf"])
def test_a_gates_role_is_read_from_its_equation_not_its_name(gate: str) -> None:
    for keeps_old, kind, words in ((False, "update", "update gate, weight of h(t)"),
                                   (True, "update_old", f"update gate, weight of a(t−1); 1 − {gate} weights h(t)")):
        cell = mixing_cell(gate, keeps_old)
        assert gate_roles(cell)[gate].kind == kind
        legend = text(parse(svg(cell)).find("s:g[@class='legend']", NS))
        assert f"{gate}: {words}" in legend
        assert (f"1 − {gate} weights" in legend) == keeps_old


def test_roles_of_the_built_in_gates() -> None:
    expected = {
        "rnn": {}, "gru_simple": {"Gu": "update"}, "gru": {"Gr": "reset", "Gu": "update"},
        "gru_torch": {"Gr": "reset", "Gz": "update_old"}, "lstm": {"Gi": "input", "Gf": "forget", "Go": "output"},
        "mgu": {"Gf": "update"}, "lstm_peephole": {"Gi": "input", "Gf": "forget", "Go": "output"},
        "min_gru": {"Gu": "update"}, "min_lstm": {"Gf": "gate", "Gi": "gate"}, "indrnn": {}, "rnn_relu": {},
    }
    kinds = {name: {g: r.kind for g, r in gate_roles(derive.cell(name)).items()} for name in expected}
    assert kinds == expected


# -- the state path ("conveyor belt") ---------------------------------------
def belt_states(cell: Cell) -> dict[str, sympy.Expr]:
    """Written here apart from the generator: the states whose new value
    depends on their old one through element-wise operations alone (affine
    outputs held fixed), with that element-wise derivative."""
    defs: dict[sympy.Symbol, sympy.Expr] = {}
    for node in cell.nodes:
        if isinstance(node, Elementwise):
            defs[sympy.Symbol(node.target)] = node.expr.xreplace(defs)
    out = {}
    for s in cell.states:
        d = sympy.diff(defs[sympy.Symbol(s.name)], sympy.Symbol(s.prev))
        if d != 0:
            out[s.name] = d
    return out


def element_wise_between(cell: Cell, sources: set[str], targets: set[str]) -> set[str]:
    """The shown element-wise nodes on an element-wise path from ``sources`` to ``targets``."""
    reads = {n.target: {s.name for s in n.expr.free_symbols} for n in cell.nodes if isinstance(n, Elementwise)}
    after = set(sources)
    for n in cell.nodes:
        if n.target in reads and reads[n.target] & after:
            after.add(n.target)
    before = set(targets)
    for n in reversed(cell.nodes):
        if n.target in before and n.target in reads:
            before |= reads[n.target]
    return {v for v in after & before if v not in targets and v not in sources and cell.node(v).show}


def on_path(root: ET.Element) -> list[ET.Element]:
    return [g for g in nodes(root) if g.get("data-on-path") == "true"]


@pytest.mark.parametrize("name", [n for n in derive.NAMES if belt_states(derive.cell(n))])
def test_state_path_follows_the_element_wise_dependence(name: str) -> None:
    cell = derive.cell(name)
    belts = belt_states(cell)
    root = parse(svg(cell, state_path=True))
    marked = on_path(root)
    named = {g.get("data-node") for g in marked if g.get("data-node")}
    prevs = {s.prev for s in cell.states if s.name in belts}
    between = element_wise_between(cell, prevs, set(belts))  # a peephole's gate, read from c(t−1) element-wise
    assert named == prevs | set(belts) | between, named  # the candidate, the inputs, other gates are off the path
    kinds = sorted(g.get("class").split()[1] for g in marked)
    assert kinds.count("state_in") == kinds.count("state_out") == len(belts)
    assert {"mul", "param"} & set(kinds) and "affine" not in kinds
    assert ("gate" in kinds) == any(isinstance(cell.node(v).expr, sigmoid) for v in between)
    desc = root.find("s:desc", NS).text
    for s, gain in belts.items():  # the gain in the description is the derivative, shown vectors put back
        assert f"{s}(t−1) → " in desc and f" → {s}(t)" in desc
    expected = {"gru": "by 1 − Gu.", "gru_simple": "by 1 − Gu.", "gru_torch": "by Gz.", "lstm": "by Gf.",
                "mgu": "by 1 − Gf.", "min_gru": "by 1 − Gu.", "min_lstm": "by Gf'(t)."}
    if name in expected:
        assert expected[name] in desc
    assert svg(cell, state_path=True) == svg(cell, state_path=True)


@pytest.mark.parametrize("name", [n for n in derive.NAMES if belt_states(derive.cell(n))])
def test_state_path_is_drawn_on_the_edges(name: str) -> None:
    """Every highlighted segment lies on a drawn edge (it follows the wires)."""
    root = parse(svg(derive.cell(name), "fr", state_path=True))
    drawn = [s for p in root.findall("s:g[@class='edges']/s:path", NS) for s in segments(p.get("d"))]
    high = [s for p in root.findall("s:g[@class='state-path']/s:path", NS) for s in segments(p.get("d"))]
    assert len(high) >= 3

    def covered(x: float, y: float) -> bool:
        return any(min(a[0], a[2]) - 0.6 <= x <= max(a[0], a[2]) + 0.6 and
                   min(a[1], a[3]) - 0.6 <= y <= max(a[1], a[3]) + 0.6 for a in drawn)

    for seg in high:
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            assert covered(seg[0] + t * (seg[2] - seg[0]), seg[1] + t * (seg[3] - seg[1])), seg
    legend = " ".join(root.find("s:g[@class='legend']", NS).itertext())  # a wrapped line is a separate <text>
    assert "le chemin de c(t−1) à c(t) qui ne traverse aucun produit matriciel" in " ".join(legend.split())


def test_a_longer_state_path_through_an_activation() -> None:
    """c(t) = tanh(k + h) with a hidden k = Gf ⊙ c(t−1): the path crosses
    ⊙, + and tanh, and its gain goes through the hidden node."""
    b = CellBuilder("squash", "Squash", "A test cell.")
    x, c_prev = b.input("x"), b.state("c")
    f = b.node("Gf", sigmoid(b.affine("z_f", "W_f", [c_prev, x], "b_f")), latex="G_f")
    h = b.node("h", sympy.tanh(b.affine("z_h", "W_h", [c_prev, x], "b_h")))
    k = b.node("k", f * c_prev, show=False)
    b.node("c", sympy.tanh(k + h))
    cell = b.build(output="c")
    root = parse(svg(cell, state_path=True))
    assert sorted(g.get("class").split()[1] for g in on_path(root)) == ["act", "add", "mul", "state_in", "state_out"]
    desc = root.find("s:desc", NS).text
    assert "c(t−1) → ⊙ → + → tanh → c(t)" in desc
    gain = desc.split("element by element, by ")[1]
    assert "Gf" in gain and "tanh" in gain and sympy.simplify(belt_states(cell)["c"]) != 0


def test_no_state_path_is_an_error_that_says_why() -> None:
    with pytest.raises(ValueError, match=r"'rnn' has no path a\(t−1\) → a\(t\) that avoids a matrix product"):
        svg(derive.cell("rnn"), state_path=True)
    with pytest.raises(ValueError, match="state_path: expected True or False, got 'yes'"):
        svg(derive.cell("gru"), state_path="yes")  # type: ignore[arg-type]


# -- unrolled over time -----------------------------------------------------
@pytest.mark.parametrize(("name", "lang"), CASES)
def test_unrolled_shows_every_step_input_state_and_parameter(name: str, lang: str) -> None:
    cell = derive.cell(name)
    s = unrolled_svg(cell, lang, steps=4)
    root = parse(s)
    assert root.find("s:title", NS).text.endswith("t = 1, 2, 3, 4")
    assert len(root.findall("s:g[@class='nodes']/s:g[@class='node step']", NS)) == 4
    pills = [text(g) for g in nodes(root) if g.get("class") != "node step"]
    assert [p for p in pills if p.startswith("x(")] == [f"x({t})" for t in range(1, 5)]
    out = cell.vectors[cell.output].latex
    assert [p for p in pills if p.startswith(f"{out}(") and p != f"{out}(0)"] == [f"{out}({t})" for t in range(1, 5)]
    assert {f"{cell.vectors[st.prev].latex}(0)" for st in cell.states} <= set(pills)  # where the chain starts
    labels = text(root.find("s:g[@class='labels']", NS))
    for param in cell.params:  # "the same parameters at every step", read from the cell
        assert param.replace("_", "") in labels.replace(" ", ""), param
    for st in cell.states:  # each state passed on between steps, named over its arrow
        assert all(f"{cell.vectors[st.name].latex}({t})" in labels for t in (1, 2, 3))
    arrows = root.findall("s:g[@class='edges']/s:path", NS)
    assert len(arrows) == len(cell.states) * 5 + 4 * (len(cell.inputs) + 1)
    assert unrolled_svg(cell, lang, steps=4) == s


def test_unrolled_follows_a_modified_cell_and_refuses_bad_steps() -> None:
    plain, gated = unrolled_svg(gated_rnn(False)), unrolled_svg(gated_rnn(True))
    assert "Wq" not in text(parse(plain)) and "Wq" in text(parse(gated))
    for bad in (0, 10, 2.5, True):
        with pytest.raises(ValueError, match="steps: expected an integer from 1 to 9"):
            unrolled_svg(derive.cell("rnn"), steps=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lang"):
        unrolled_svg(derive.cell("rnn"), "de")


# -- the site's diagram directive -------------------------------------------
def test_diagram_directive_views(tmp_path) -> None:  # noqa: ANN001 - pytest's tmp_path
    from derive.site.directives import DirectiveError, Sources, expand

    sources = Sources(docs_dir=tmp_path)

    def html(line: str, lang: str = "en") -> str:
        return expand(line + "\n", page="p.md", lang=lang, sources=sources).slots[0].html

    step, path, unrolled = (html(f"{{{{ derive: diagram gru{v} }}}}") for v in ("", " state-path", " unrolled"))
    assert 'class="state-path"' in path and 'class="state-path"' not in step
    assert 'class="node step"' in unrolled and 'class="node step"' not in step
    assert step.startswith('<div class="derive-diagram" role="region" tabindex="0" aria-label="Cell gru: ')
    assert 'aria-label="Cellule gru\u00a0: le graphe' in html("{{ derive: diagram gru }}", "fr")
    with pytest.raises(DirectiveError, match="unknown diagram view 'belt'; known views: step, state-path, unrolled"):
        html("{{ derive: diagram gru belt }}")
    with pytest.raises(DirectiveError, match="'diagram' takes 1 to 2 argument"):
        html("{{ derive: diagram gru state-path unrolled }}")
    with pytest.raises(DirectiveError, match="p.md:1: .*'rnn' has no path"):
        html("{{ derive: diagram rnn state-path }}")


@pytest.mark.parametrize("name", derive.NAMES)
def test_other_views_are_standalone_and_theme_neutral_too(name: str) -> None:
    """As the plain diagram: no outside reference, lines in the page's
    colour; the highlight is one translucent tint, readable on light and dark."""
    cell = derive.cell(name)
    views = [unrolled_svg(cell, "fr")] + ([svg(cell, "fr", state_path=True)] if belt_states(cell) else [])
    for s in views:
        assert not re.search(r"href|<image|@import|@font-face|url\((?!#)", s) and "\n\n" not in s
        for elem in parse(s).iter():
            if elem.get("stroke") not in (None, "currentColor", "none"):
                assert elem.get("stroke") == "#e8590c" and float(elem.get("stroke-opacity")) <= 0.5
            if elem.get("fill") not in (None, "none", "currentColor"):
                assert re.fullmatch(r"#[0-9a-f]{6}", elem.get("fill")) and float(elem.get("fill-opacity")) < 0.4
