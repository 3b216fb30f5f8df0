"""The params of ``rnn`` / ``gru`` / ``gru_torch`` / ``lstm`` ⇄ an ONNX model made
of the standard ``RNN`` / ``GRU`` / ``LSTM`` operator; running ONNX models.

ONNX stacks each gate's weights in rows, ``W`` (1, k·n_h, n_x) on x and ``R``
(1, k·n_h, n_h) on the state, gate order z, r, h for the GRU and i, o, f, c
for the LSTM, and one bias input ``B`` (1, 2·k·n_h): all the ``Wb`` then all
the ``Rb``. Its GRU says which GRU it is with ``linear_before_reset``: 1 is
``gru_torch`` (the reset gate multiplies ``R_h H + Rb_h``), 0 is the thread's
``gru``. Either way ONNX's z keeps the old state, H(t) = (1 − z) ⊙ h + z ⊙ H(t−1):
for ``gru`` that is G_u = 1 − z, z's weights negated.

Every model this module writes has derive's interface: inputs ``xs``
(T, B, n_x) and one ``<state>0`` (B, n_h) per state, outputs ``ys``
(T, B, n_h) and one ``<state>T`` per state (the standard operator's extra
axis for the direction is squeezed inside the graph), so that :func:`run`
runs it like a kernel's ``forward``.

onnxruntime has no float64 kernel for ``RNN``, ``GRU`` or ``LSTM`` (it says
"does not support double"): a float64 model of these operators runs in
ONNX's reference evaluator (``engine="reference"``), a float32 one in both.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .layouts import Block, Layout

if TYPE_CHECKING:
    import onnx

OPSET = 21
"""The ONNX opset of the models written here (RNN, GRU, LSTM since 14, Scan since 21)."""

IR_VERSION = 10
"""The ONNX IR version written (the one opset 21 came with, read by onnxruntime ≥ 1.17)."""

LAYOUTS: tuple[Layout, ...] = (
    Layout("ONNX", "RNN", "activations=['Tanh']", "rnn", (Block("i", "a"),), "no gate",
           "Wb + Rb = b_a (written as Wb = b_a, Rb = 0)"),
    Layout("ONNX", "RNN", "activations=['Relu']", "rnn_relu", (Block("i", "a"),), "no gate",
           "Wb + Rb = b_a (written as Wb = b_a, Rb = 0)"),
    Layout("ONNX", "GRU", "linear_before_reset=1", "gru_torch", (Block("z", "z"), Block("r", "r"), Block("h", None)),
           "z = G_z keeps H(t−1)", "Wb + Rb for z and r; Wb_h = b_hx, Rb_h = b_hc stay apart"),
    Layout("ONNX", "GRU", "linear_before_reset=0", "gru", (Block("z", "u", -1), Block("r", "r"), Block("h", "h")),
           "z = 1 − G_u keeps H(t−1)", "Wb + Rb for every gate"),
    Layout("ONNX", "LSTM", "", "lstm", (Block("i", "i"), Block("o", "o"), Block("f", "f"), Block("c", "h")),
           "f = G_f keeps c(t−1)", "Wb + Rb for every gate"),
)
"""Every standard ONNX operator this module converts, with its gate blocks in ONNX's order."""

STATES = {"rnn": (("a", "h"),), "rnn_relu": (("a", "h"),), "gru": (("c", "h"),), "gru_torch": (("c", "h"),), "lstm": (("a", "h"), ("c", "c"))}
"""derive's states and the operator's name for each (``initial_h``/``Y_h``, ``initial_c``/``Y_c``)."""

_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def import_onnx() -> Any:
    """``onnx``, or an ImportError saying how to install it (the ``interop`` extra)."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"derive.interop.onnx needs onnx: pip install 'derive[interop]' ({e})") from None
    return onnx


def layout_of(cell_name: str) -> Layout:
    """The standard operator computing ``cell_name``; a ValueError naming the cells ONNX has otherwise."""
    for layout in LAYOUTS:
        if layout.cell == cell_name:
            return layout
    raise ValueError(f"cell_name: expected one of {[l.cell for l in LAYOUTS]} (cells with a standard ONNX "
                     f"operator; `derive export` writes any cell as a Scan graph), got {cell_name!r}")


def to_onnx(cell_name: str, params: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A checked ONNX model computing the cell with one standard operator
    (dtype of ``params``), with derive's interface (see the module docstring)."""
    layout = layout_of(cell_name)
    from .. import cell
    from ..runtime import check_params

    specs = {k: (p.rows,) if p.is_bias else (p.rows, "+".join(p.cols)) for k, p in cell(cell_name).params.items()}
    sizes, dtype = check_params(params, specs)
    n_x, n_h = sizes["n_x"], sizes["n_h"]
    k = len(layout.blocks)
    w = np.empty((k * n_h, n_x), dtype)
    r = np.empty((k * n_h, n_h), dtype)
    b = np.zeros((2, k * n_h), dtype)  # rows: Wb, Rb
    for i, block in enumerate(layout.blocks):
        rows = slice(i * n_h, (i + 1) * n_h)
        if block.gate is None:
            w[rows], r[rows], b[0, rows], b[1, rows] = params["W_hx"], params["W_hc"], params["b_hx"], params["b_hc"]
        else:
            weight = block.sign * params[f"W_{block.gate}"]
            r[rows], w[rows] = weight[:, :n_h], weight[:, n_h:]
            b[0, rows] = block.sign * params[f"b_{block.gate}"]
    onnx = import_onnx()
    from onnx import helper, numpy_helper

    elem = helper.np_dtype_to_tensor_dtype(dtype)
    states = STATES[cell_name]
    attrs: dict[str, Any] = {"hidden_size": n_h}
    if layout.layer == "GRU":
        attrs["linear_before_reset"] = int(layout.split_candidate)
    if layout.layer == "RNN":
        attrs["activations"] = _setting_activations(layout)
    nodes = [helper.make_node("Unsqueeze", [f"{s}0", "axis0"], [f"initial_{o}"]) for s, o in states]
    op_inputs = ["xs", "W", "R", "B", "", "initial_h"] + (["initial_c"] if layout.layer == "LSTM" else [])
    nodes.append(helper.make_node(layout.layer, op_inputs, ["Y"] + [f"Y_{o}" for _, o in states], **attrs))
    nodes.append(helper.make_node("Squeeze", ["Y", "axis1"], ["ys"]))
    nodes += [helper.make_node("Squeeze", [f"Y_{o}", "axis0"], [f"{s}T"]) for s, o in states]
    initializers = [numpy_helper.from_array(a, name) for name, a in
                    (("W", w[None]), ("R", r[None]), ("B", b.reshape(1, -1)),
                     ("axis0", np.array([0], np.int64)), ("axis1", np.array([1], np.int64)))]
    inputs = [helper.make_tensor_value_info("xs", elem, ["T", "B", n_x])]
    inputs += [helper.make_tensor_value_info(f"{s}0", elem, ["B", n_h]) for s, _ in states]
    outputs = [helper.make_tensor_value_info("ys", elem, ["T", "B", n_h])]
    outputs += [helper.make_tensor_value_info(f"{s}T", elem, ["B", n_h]) for s, _ in states]
    graph = helper.make_graph(nodes, f"derive_{cell_name}", inputs, outputs, initializers)
    return _finish(graph, cell_name, f"{cell_name} as the standard ONNX {layout.layer} operator "
                   f"({layout.setting or 'default activations'}), written by derive.interop.onnx.to_onnx")


def from_onnx(model: onnx.ModelProto | str | os.PathLike[str]) -> tuple[str, dict[str, np.ndarray]]:
    """The cell name and params of the one ``RNN``/``GRU``/``LSTM`` node of
    ``model`` (a ModelProto or a file), read from its initialisers. A setting
    no derive cell computes raises one ValueError naming it."""
    onnx = import_onnx()
    from onnx import helper, numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    found = [n for n in model.graph.node if n.op_type in _DEFAULT_ACTIVATIONS and n.domain in ("", "ai.onnx")]
    if len(found) != 1:
        raise ValueError(f"model: expected exactly one RNN, GRU or LSTM node, got {len(found)}")
    node = found[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    problems = []
    activations = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    known = [_setting_activations(l) for l in LAYOUTS if l.layer == node.op_type and l.layer == "RNN" and _known(l.cell)]
    known = known or [_DEFAULT_ACTIVATIONS[node.op_type]]
    if activations and activations not in known:
        problems.append(f"activations={activations} (only {' or '.join(str(k) for k in known)})")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction != "forward":
        problems.append(f"direction={direction!r} (only 'forward')")
    for name, ok in (("clip", None), ("layout", 0), ("input_forget", 0), ("activation_alpha", None),
                     ("activation_beta", None)):
        if name in attrs and attrs[name] != ok and attrs[name] != []:
            problems.append(f"{name}={attrs[name]!r} (only {'unset' if ok is None else ok})")
    if len(node.input) > 7 and node.input[7]:
        problems.append("peepholes P (not the standard lstm)")
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    missing = [node.input[i] for i in (1, 2) if node.input[i] not in initializers]
    if missing:
        problems.append(f"W and R must be initialisers ({missing[0]!r} is not)")
    if len(node.input) > 3 and node.input[3] and node.input[3] not in initializers:
        problems.append(f"B must be an initialiser ({node.input[3]!r} is not)")
    if problems:
        raise ValueError(f"model: unsupported {node.op_type} node: " + ", ".join(problems))
    setting = {"GRU": f"linear_before_reset={attrs.get('linear_before_reset', 0)}",
               "RNN": f"activations={activations or _DEFAULT_ACTIVATIONS['RNN']}"}.get(node.op_type)
    layout = next(l for l in LAYOUTS if l.layer == node.op_type and (setting is None or l.setting == setting))
    w, r = initializers[node.input[1]][0], initializers[node.input[2]][0]
    n_h = r.shape[1]
    has_b = len(node.input) > 3 and node.input[3]
    b = initializers[node.input[3]].reshape(2, -1) if has_b else np.zeros((2, w.shape[0]), w.dtype)
    params: dict[str, np.ndarray] = {}
    for i, block in enumerate(layout.blocks):
        rows = slice(i * n_h, (i + 1) * n_h)
        if block.gate is None:
            params.update(W_hx=w[rows], W_hc=r[rows], b_hx=b[0, rows], b_hc=b[1, rows])
        else:
            params[f"W_{block.gate}"] = block.sign * np.hstack([r[rows], w[rows]])
            params[f"b_{block.gate}"] = block.sign * (b[0, rows] + b[1, rows])
    return layout.cell, {k: np.ascontiguousarray(v) for k, v in params.items()}


def run(model: onnx.ModelProto, xs: np.ndarray, state0: dict[str, np.ndarray] | None = None, *,
        engine: str = "onnxruntime") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run a model with derive's interface (written by :func:`to_onnx` or
    ``derive export``) like a kernel's ``forward``: ``ys`` (T, B, n_h) and the
    final states. ``engine`` is ``"onnxruntime"`` or ``"reference"`` (ONNX's
    own Python evaluator, which has float64 recurrent operators)."""
    onnx = import_onnx()
    from onnx import helper

    names = [i.name for i in model.graph.input]
    states = [n[:-1] for n in names if n != "xs"]
    if not names or names[0] != "xs" or not all(n.endswith("0") for n in names[1:]):
        raise ValueError(f"model: expected inputs xs, <state>0… (derive's interface), got {names}")
    dtype = helper.tensor_dtype_to_np_dtype(model.graph.input[0].type.tensor_type.elem_type)
    xs = np.asarray(xs)
    if xs.dtype != dtype or xs.ndim != 3:
        raise ValueError(f"xs: expected a (T, B, n_x) array of {dtype}, got shape {xs.shape} of {xs.dtype}")
    state0 = state0 or {}
    feeds = {"xs": xs} | {f"{s}0": np.asarray(state0.get(s, np.zeros((xs.shape[1], _n_h(model)), dtype)))
                          for s in states}
    outputs = [o.name for o in model.graph.output]
    if engine == "onnxruntime":
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError(f"engine='onnxruntime' needs onnxruntime: pip install 'derive[interop]' ({e})") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: the refusals are raised to the caller anyway
        session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = session.run(outputs, feeds)
    elif engine == "reference":
        from onnx.reference import ReferenceEvaluator

        values = ReferenceEvaluator(model).run(outputs, feeds)
    else:
        raise ValueError(f"engine: expected 'onnxruntime' or 'reference', got {engine!r}")
    out = dict(zip(outputs, values, strict=True))
    return out["ys"], {s: out[f"{s}T"] for s in states}


def _setting_activations(layout: Layout) -> list[str]:
    """The ``activations`` attribute a layout's setting names (``activations=['Relu']``)."""
    import ast

    return ast.literal_eval(layout.setting.partition("=")[2])


def _known(cell_name: str) -> bool:
    from ..cells import names

    return cell_name in names()


def _n_h(model: onnx.ModelProto) -> int:
    return model.graph.output[0].type.tensor_type.shape.dim[2].dim_value


def _finish(graph: Any, cell_name: str, doc: str) -> onnx.ModelProto:
    """The model around ``graph``: opset, IR version, provenance; checked."""
    onnx = import_onnx()
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="derive",
                              doc_string=doc)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"derive.cell": cell_name})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_cell(cell: Any, params: dict[str, np.ndarray], *, command: str = "") -> onnx.ModelProto:
    """Any cell (a :class:`derive.Cell`, a name or a cell file) with ``params``
    as a checked ONNX model that runs its forward step in a ``Scan`` over time
    (opset :data:`OPSET`), with derive's interface; see
    :mod:`derive.render.onnx_graph`."""
    import_onnx()
    from ..load import resolve
    from ..render.onnx_graph import generate

    return generate(resolve(cell), params, opset=OPSET, ir_version=IR_VERSION, command=command)
