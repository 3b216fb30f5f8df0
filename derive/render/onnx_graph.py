"""Any cell's forward step as an ONNX graph: one more printer of the same equations.

The step becomes the body of a ``Scan`` over time: each :class:`Affine` node
is one ``MatMul`` per part of its concatenation plus the bias (``W [p1; p2] + b``
is ``p1 W_p1ᵀ + p2 W_p2ᵀ + b`` on a batch of rows), each :class:`Elementwise`
node a walk of its SymPy tree (``Add``/``Sub``, ``Mul``/``Div``, powers,
numbers as constants, the registry's functions as :data:`SPELLINGS`).
Weights, biases and per-element parameters are initialisers of the outer
graph, which the body reads by name.

The model has derive's interface: inputs ``xs`` (T, B, n_x) and ``<state>0``
(B, n_h), outputs ``ys`` (T, B, n_h) and ``<state>T``; see
:func:`derive.interop.onnx.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from .. import functions
from ..cell import Cell, CellError
from ..graph import Affine, Elementwise

if TYPE_CHECKING:
    import onnx


class _Body:
    """The nodes of the Scan body being printed, with fresh temporary names."""

    def __init__(self, dtype: np.dtype, constants: dict[str, np.ndarray]) -> None:
        from onnx import helper

        self.helper, self.dtype, self.constants = helper, dtype, constants
        self.nodes: list[Any] = []
        self.count = 0

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        """Append ``op_type(inputs)``; returns the name of its output."""
        self.count += 1
        out = f"t{self.count}.{op_type}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attributes))
        return out

    def constant(self, value: float) -> str:
        """A scalar of the model's dtype, stored once as an outer initialiser."""
        array = np.asarray(value, self.dtype)
        name = f"const.{array.item()!r}"
        self.constants.setdefault(name, array)
        return name


def _softplus(body: _Body, z: str) -> str:
    # log(1 + e^z) = relu(z) + log(1 + e^(−|z|)): no overflow, and only operators that
    # onnxruntime has in float64 (its Softplus is float32 only)
    tail = body.op("Log", body.op("Add", body.constant(1.0), body.op("Exp", body.op("Neg", body.op("Abs", z)))))
    return body.op("Add", body.op("Relu", z), tail)


def _hard_sigmoid(body: _Body, z: str) -> str:
    # clip(z/6 + 1/2, 0, 1), which ONNX's HardSigmoid(alpha=1/6, beta=0.5) is; spelled with Div, Add,
    # Max, Min because onnxruntime's HardSigmoid is float32 only
    y = body.op("Add", body.op("Div", z, body.constant(6.0)), body.constant(0.5))
    return body.op("Max", body.op("Min", y, body.constant(1.0)), body.constant(0.0))


SPELLINGS: dict[str, Callable[[_Body, str], str]] = {
    "sigmoid": lambda body, z: body.op("Sigmoid", z),
    "tanh": lambda body, z: body.op("Tanh", z),
    "relu": lambda body, z: body.op("Relu", z),
    "softplus": _softplus,
    "hard_sigmoid": _hard_sigmoid,
    "exp": lambda body, z: body.op("Exp", z),
    "identity": lambda body, z: z,
}
"""The ONNX spelling of each forward activation of :data:`derive.functions.REGISTRY`,
by its registry name (the derivatives' indicators never appear in a forward step)."""


def _expr(body: _Body, expr: sympy.Expr, names: dict[str, str], memo: dict[sympy.Expr, str]) -> str:
    """The value name of ``expr``, every vector and parameter an element-wise operand."""
    if expr in memo:
        return memo[expr]
    if expr.is_Symbol:
        out = names[expr.name]
    elif expr.is_Number:
        out = body.constant(float(expr))
    elif isinstance(expr, sympy.Add):
        plus, minus = [], []
        for term in expr.args:
            coeff, rest = term.as_coeff_Mul()
            (minus if coeff.is_negative else plus).append(-term if coeff.is_negative else term)
        out = None
        for term in plus:
            value = _expr(body, term, names, memo)
            out = value if out is None else body.op("Add", out, value)
        for term in minus:
            value = _expr(body, term, names, memo)
            out = body.op("Neg", value) if out is None else body.op("Sub", out, value)
    elif isinstance(expr, sympy.Mul):
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_negative:
            out = body.op("Neg", _expr(body, -expr, names, memo))
        else:
            numerator, denominator = [], []
            for factor in expr.args:
                if factor.is_Pow and factor.exp.is_Number and factor.exp.is_negative:
                    denominator.append(factor.base ** -factor.exp)
                else:
                    numerator.append(factor)
            out = None
            for factor in numerator:
                value = _expr(body, factor, names, memo)
                out = value if out is None else body.op("Mul", out, value)
            out = out if out is not None else body.constant(1.0)
            for factor in denominator:
                out = body.op("Div", out, _expr(body, factor, names, memo))
    elif isinstance(expr, sympy.Pow):
        base, exp = expr.args
        if exp.is_negative:
            out = body.op("Div", body.constant(1.0), _expr(body, base ** -exp, names, memo))
        elif exp == 2:
            value = _expr(body, base, names, memo)
            out = body.op("Mul", value, value)
        elif exp == sympy.Rational(1, 2):
            out = body.op("Sqrt", _expr(body, base, names, memo))
        else:
            out = body.op("Pow", _expr(body, base, names, memo), body.constant(float(exp)))
    elif (entry := functions.of(expr)) is not None and entry.name in SPELLINGS:
        out = SPELLINGS[entry.name](body, _expr(body, expr.args[0], names, memo))
    else:
        raise CellError(f"the ONNX printer cannot spell {expr} (known functions: {', '.join(SPELLINGS)})")
    memo[expr] = out
    return out


def generate(cell: Cell, params: dict[str, np.ndarray], *, opset: int, ir_version: int,
             command: str = "") -> onnx.ModelProto:
    """The ONNX model running ``cell`` over time with ``params`` (float32 or
    float64, kept), checked by ``onnx.checker``. ``command`` is named in the
    model's doc string as the way it was made."""
    import onnx
    from onnx import helper, numpy_helper

    from ..runtime import check_params

    specs = {k: (p.rows,) if p.is_bias else (p.rows, "+".join(p.cols)) for k, p in cell.params.items()}
    sizes, dtype = check_params(params, specs)
    n_x, n_h = sizes["n_x"], sizes["n_h"]
    size = {"n_x": n_x, "n_h": n_h}
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    initialisers: dict[str, np.ndarray] = {}
    body = _Body(dtype, initialisers)
    names: dict[str, str] = {v: f"v.{v}" for v in cell.vectors}
    for key, p in cell.params.items():
        if p.is_bias:  # a bias or a per-element parameter: (n_h,), broadcast over the batch
            names[key] = f"param.{key}"
            initialisers[names[key]] = np.asarray(params[key])
    for node in cell.nodes:
        if isinstance(node, Affine):
            start, total = 0, None
            for part in node.parts:
                width = size[cell.vectors[part].size]
                block = f"param.{node.weight}.{part}.T"  # the columns acting on ``part``, transposed
                initialisers[block] = np.ascontiguousarray(params[node.weight][:, start:start + width].T)
                start += width
                product = body.op("MatMul", names[part], block)
                total = product if total is None else body.op("Add", total, product)
            if node.bias:
                total = body.op("Add", total, names[node.bias])
            body.nodes.append(helper.make_node("Identity", [total], [names[node.target]]))
        elif isinstance(node, Elementwise):
            value = _expr(body, node.expr, names, {})
            body.nodes.append(helper.make_node("Identity", [value], [names[node.target]]))
    x = cell.inputs[0]
    states = cell.states
    body_inputs = [helper.make_tensor_value_info(names[s.prev], elem, ["B", n_h]) for s in states]
    body_inputs.append(helper.make_tensor_value_info(names[x], elem, ["B", n_x]))
    for s in states:
        body.nodes.append(helper.make_node("Identity", [names[s.name]], [f"new.{s.name}"]))
    body.nodes.append(helper.make_node("Identity", [names[cell.output]], ["out.y"]))
    body_outputs = [helper.make_tensor_value_info(f"new.{s.name}", elem, ["B", n_h]) for s in states]
    body_outputs.append(helper.make_tensor_value_info("out.y", elem, ["B", n_h]))
    step = helper.make_graph(body.nodes, f"{cell.name}_step", body_inputs, body_outputs)
    scan = helper.make_node("Scan", [f"{s.name}0" for s in states] + ["xs"], [f"{s.name}T" for s in states] + ["ys"],
                            body=step, num_scan_inputs=1)
    inputs = [helper.make_tensor_value_info("xs", elem, ["T", "B", n_x])]
    inputs += [helper.make_tensor_value_info(f"{s.name}0", elem, ["B", n_h]) for s in states]
    outputs = [helper.make_tensor_value_info("ys", elem, ["T", "B", n_h])]
    outputs += [helper.make_tensor_value_info(f"{s.name}T", elem, ["B", n_h]) for s in states]
    graph = helper.make_graph([scan], f"derive_{cell.name}", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in sorted(initialisers.items())])
    doc = (f"{cell.title} ({cell.name}, from {cell.source}): its forward step in a Scan over time, "
           f"opset {opset}; generated by derive" + (f" (`{command}`)" if command else ""))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="derive",
                              doc_string=doc)
    model.ir_version = ir_version
    helper.set_model_props(model, {"derive.cell": cell.name, "derive.source": cell.source})
    onnx.checker.check_model(model, full_check=True)
    return model
