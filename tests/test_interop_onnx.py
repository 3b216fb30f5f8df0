"""rnn / gru / gru_torch / lstm ⇄ the standard ONNX RNN / GRU / LSTM operators."""

from __future__ import annotations

import numpy as np
import pytest
from interop_support import need

from derive import kernels

T, B, N_X, N_H = 6, 3, 4, 5
CELLS = ["rnn", "rnn_relu", "gru", "gru_torch", "lstm"]


def _case(name: str, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = kernels.load(name).init_params(N_X, N_H, seed=seed, dtype=dtype)
    xs = rng.normal(size=(T, B, N_X)).astype(dtype)
    state0 = {s: rng.uniform(-0.9, 0.9, (B, N_H)).astype(dtype) for s in kernels.load(name).STATES}
    return params, xs, state0


def _gap(name, params, xs, state0, model, engine):
    from derive.interop.onnx import run

    ys, cache = kernels.load(name).forward(params, xs, state0)
    ys_o, final_o = run(model, xs, state0, engine=engine)
    assert sorted(final_o) == sorted(cache["final"])
    return max([np.abs(ys - ys_o).max()] + [np.abs(cache["final"][s] - final_o[s]).max() for s in final_o])


@pytest.mark.parametrize("name", CELLS)
def test_standard_operator_float64_in_the_reference_evaluator(name):
    need("onnx")
    from derive.interop.onnx import to_onnx

    params, xs, state0 = _case(name, np.float64)
    if name == "rnn_relu":  # ONNX's reference RNN knows only Tanh (and Affine): float32 in onnxruntime only
        with pytest.raises(RuntimeError, match="Unknown activation function 'Relu'"):
            _gap(name, params, xs, state0, to_onnx(name, params), "reference")
        return
    assert _gap(name, params, xs, state0, to_onnx(name, params), "reference") < 1e-10


@pytest.mark.parametrize("name", CELLS)
def test_standard_operator_float32_in_onnxruntime(name):
    need("onnxruntime")
    from derive.interop.onnx import to_onnx

    params, xs, state0 = _case(name, np.float32, seed=1)
    assert _gap(name, params, xs, state0, to_onnx(name, params), "onnxruntime") < 2e-6


def test_onnxruntime_has_no_float64_recurrent_operators():
    """Why the float64 figures above come from ONNX's reference evaluator: if
    onnxruntime gains float64 GRU kernels, this fails and the tests should use it."""
    need("onnxruntime")
    from derive.interop.onnx import run, to_onnx

    params, xs, state0 = _case("gru", np.float64)
    with pytest.raises(Exception, match="does not support double"):
        run(to_onnx("gru", params), xs, state0)


@pytest.mark.parametrize("name", CELLS)
def test_export_then_import_is_exact(name, tmp_path):
    onnx = need("onnx")
    from derive.interop.onnx import from_onnx, to_onnx

    params, _, _ = _case(name, np.float64, seed=2)
    path = tmp_path / "m.onnx"
    onnx.save(to_onnx(name, params), path)
    back_name, back = from_onnx(path)
    assert back_name == name and sorted(back) == sorted(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)
    op = {"rnn": "RNN", "rnn_relu": "RNN", "gru": "GRU", "gru_torch": "GRU", "lstm": "LSTM"}[name]
    node = next(n for n in onnx.load(path).graph.node if n.op_type == op)
    lbr = [a.i for a in node.attribute if a.name == "linear_before_reset"]
    assert lbr == ({"gru": [0], "gru_torch": [1]}.get(name, []))


def _with_attribute(model, **attrs):
    from onnx import helper

    node = next(n for n in model.graph.node if n.op_type in ("RNN", "GRU", "LSTM"))
    for key, value in attrs.items():
        node.attribute.append(helper.make_attribute(key, value))
    return model


@pytest.mark.parametrize(("name", "attrs", "message"), [
    ("gru", {"direction": "reverse"}, "unsupported GRU node: direction='reverse' (only 'forward')"),
    ("lstm", {"activations": ["Sigmoid", "Relu", "Tanh"]},
     "unsupported LSTM node: activations=['Sigmoid', 'Relu', 'Tanh'] (only ['Sigmoid', 'Tanh', 'Tanh'])"),
    ("rnn", {"clip": 3.0}, "unsupported RNN node: clip=3.0 (only unset)"),
    ("rnn", {"activations": ["Sigmoid"]}, "unsupported RNN node: activations=['Sigmoid'] (only ['Tanh'] or ['Relu'])"),
    ("lstm", {"input_forget": 1}, "unsupported LSTM node: input_forget=1 (only 0)"),
])
def test_unsupported_nodes_are_refused_in_one_line(name, attrs, message):
    need("onnx")
    from derive.interop.onnx import from_onnx, to_onnx

    params, _, _ = _case(name, np.float32)
    with pytest.raises(ValueError) as info:
        from_onnx(_with_attribute(to_onnx(name, params), **attrs))
    assert str(info.value) == "model: " + message


def test_cells_without_a_standard_operator_are_refused():
    need("onnx")
    from derive.interop.onnx import to_onnx

    with pytest.raises(ValueError, match=r"^cell_name: expected one of \['rnn', 'rnn_relu', 'gru_torch', 'gru', 'lstm'\] .* "
                                         r"got 'gru_simple'$"):
        to_onnx("gru_simple", kernels.load("gru_simple").init_params(2, 3))
