"""Conversions between torch, Keras and ONNX through derive's params, and the refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from interop_support import need

from derive import kernels

T, B, N_X, N_H = 6, 3, 4, 5
KINDS = ["RNN", "GRU", "LSTM"]


def _torch_module(kind: str, dtype=torch.float64, seed: int = 0) -> torch.nn.Module:
    """A torch layer with trained-looking weights: random, biases nonzero."""
    torch.manual_seed(seed)
    module = getattr(torch.nn, kind)(N_X, N_H, dtype=dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.7, 0.7)
    return module


def _run_torch(module, xs, state0):
    """ys (T, B, n_h) and the final states, keyed like derive's (a, c for the LSTM; c for the GRU)."""
    x = torch.from_numpy(xs)
    with torch.no_grad():
        if isinstance(module, torch.nn.LSTM):
            ys, (h, c) = module(x, (torch.from_numpy(state0["a"])[None], torch.from_numpy(state0["c"])[None]))
            return ys.numpy(), {"a": h[0].numpy(), "c": c[0].numpy()}
        key = "a" if isinstance(module, torch.nn.RNN) else "c"
        ys, h = module(x, torch.from_numpy(state0[key])[None])
        return ys.numpy(), {key: h[0].numpy()}


def _inputs(module, dtype=np.float64, seed: int = 1):
    rng = np.random.default_rng(seed)
    states = ("a", "c") if isinstance(module, torch.nn.LSTM) else ("a",) if isinstance(module, torch.nn.RNN) else ("c",)
    xs = rng.normal(size=(T, B, N_X)).astype(dtype)
    return xs, {s: rng.uniform(-0.9, 0.9, (B, N_H)).astype(dtype) for s in states}


def _gap(a, b):
    (ys_a, fa), (ys_b, fb) = a, b
    assert sorted(fa) == sorted(fb)
    return max([np.abs(ys_a - ys_b).max()] + [np.abs(fa[s] - fb[s]).max() for s in fa])


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_torch_to_keras_computes_the_same(kind):
    need("keras")
    from derive.interop.convert import torch_to_keras
    from derive.interop.keras import run

    module = _torch_module(kind)
    xs, state0 = _inputs(module)
    assert _gap(_run_torch(module, xs, state0), run(torch_to_keras(module), xs, state0)) < 1e-10


@pytest.mark.parametrize(("kind", "options"), [("SimpleRNN", {}), ("GRU", {"reset_after": True}), ("LSTM", {})])
def test_keras_to_torch_computes_the_same(kind, options):
    keras = need("keras")
    from derive.interop.convert import keras_to_torch
    from derive.interop.keras import from_keras
    from derive.interop.torch import from_torch

    layer = getattr(keras.layers, kind)(N_H, return_sequences=True, return_state=True, dtype="float64", **options)
    layer.build((None, None, N_X))
    rng = np.random.default_rng(2)
    layer.set_weights([rng.uniform(-0.7, 0.7, w.shape) for w in layer.weights])
    module = keras_to_torch(layer)
    name, params = from_keras(layer)
    back_name, back = from_torch(module)
    assert back_name == name
    for key in params:  # biases: torch holds b in bias_ih and zeros in bias_hh, whose sum is b exactly
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)
    xs, state0 = _inputs(module)
    ys, cache = kernels.load(name).forward(params, xs, state0)
    assert _gap(_run_torch(module, xs, state0), (ys, cache["final"])) < 1e-12


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_torch_derive_keras_derive_torch(kind):
    need("keras")
    from derive.interop.keras import from_keras, to_keras
    from derive.interop.torch import from_torch, to_torch

    module = _torch_module(kind, seed=3)
    name, params = from_torch(module)
    name2, params2 = from_keras(to_keras(name, params))
    again = to_torch(name2, params2)
    assert name2 == name and type(again) is type(module)
    for key in params:
        np.testing.assert_array_equal(params2[key], params[key], err_msg=key)
    xs, state0 = _inputs(module, seed=4)
    assert _gap(_run_torch(module, xs, state0), _run_torch(again, xs, state0)) < 1e-12


@pytest.mark.parametrize("kind", KINDS)
def test_torch_to_onnx_in_onnxruntime_float32(kind):
    need("onnxruntime")
    from derive.interop.convert import torch_to_onnx
    from derive.interop.onnx import run

    module = _torch_module(kind, dtype=torch.float32, seed=5)
    xs, state0 = _inputs(module, np.float32, seed=6)
    assert _gap(_run_torch(module, xs, state0), run(torch_to_onnx(module), xs, state0)) < 1e-6


def test_torch_own_onnx_export_reads_back_as_gru_torch():
    """torch.onnx.export writes its GRU with linear_before_reset=1 and gates z, r, h:
    read back, the params are from_torch's exactly."""
    need("onnx")
    import io

    from derive.interop.onnx import from_onnx
    from derive.interop.torch import from_torch

    module = _torch_module("GRU", dtype=torch.float32, seed=7)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(T, B, N_X),), buffer, dynamo=False, opset_version=17)
    import onnx

    name, params = from_onnx(onnx.load_from_string(buffer.getvalue()))
    expected_name, expected = from_torch(module)
    assert name == expected_name == "gru_torch"
    for key in expected:
        np.testing.assert_array_equal(params[key], expected[key], err_msg=key)


def test_keras_gru_reset_before_to_torch_is_refused_with_the_reason():
    keras = need("keras")
    from derive.interop.convert import keras_to_torch

    layer = keras.layers.GRU(N_H, reset_after=False, dtype="float64")
    layer.build((None, None, N_X))
    with pytest.raises(ValueError) as info:
        keras_to_torch(layer)
    assert str(info.value) == (
        "cannot convert gru (A reset gate Gr filters c(t−1) before the candidate's matrix product; Gu mixes as "
        "before) to torch: its layers compute only rnn (Vanilla RNN), rnn_relu (Vanilla RNN (ReLU)), "
        "gru_torch (PyTorch / cuDNN GRU), lstm (LSTM), "
        "so no exact conversion exists and none is approximated; it converts to keras and onnx")


def test_gru_simple_has_no_layer_anywhere():
    from derive.interop.convert import convert

    params = kernels.load("gru_simple").init_params(N_X, N_H)
    with pytest.raises(ValueError, match=r"^cannot convert gru_simple \(.*\) to onnx: its layers compute only "
                                         r"rnn \(Vanilla RNN\), .*none is approximated$"):
        convert(("gru_simple", params), "onnx")


def test_unknown_target_and_source_are_refused():
    from derive.interop.convert import convert

    with pytest.raises(ValueError, match=r"^to: expected one of \['torch', 'keras', 'onnx'\], got 'tf'$"):
        convert(_torch_module("GRU"), "tf")
    with pytest.raises(ValueError, match=r"^source: expected a torch module, .* got int$"):
        convert(3, "keras")


def test_gru_converts_to_keras_and_onnx_but_not_torch():
    need("keras")
    need("onnx")
    from derive.interop.convert import convert, targets_of
    from derive.interop.keras import from_keras
    from derive.interop.onnx import from_onnx

    assert targets_of("gru") == ["keras", "onnx"]
    params = kernels.load("gru").init_params(N_X, N_H, seed=8)
    for name, back in (from_keras(convert(("gru", params), "keras")), from_onnx(convert(("gru", params), "onnx"))):
        assert name == "gru"
        for key in params:
            np.testing.assert_array_equal(back[key], params[key], err_msg=key)


def test_conversion_table_is_read_from_the_layouts(monkeypatch):
    """The site's table (docs/interop.md) comes from the interop modules' layouts:
    change a layout and the table changes; the pages type none of it."""
    from pathlib import Path

    from derive.interop import keras as keras_interop
    from derive.interop.convert import layouts, table_rows
    from derive.interop.layouts import Block

    rows = table_rows("layers")
    assert len(rows) == 2 + len(layouts()) == 2 + 4 + 5 + 5  # rnn_relu: torch, Keras and ONNX too
    gru_v3 = next(r for r in rows if "Keras `GRU` `reset_after=False`" in r)
    assert "`z` → `−W_u`" in gru_v3 and "`b_u = −bias_z`" in gru_v3
    torch_gru = next(r for r in rows if "torch `nn.GRU`" in r)
    assert "`r` → `W_r`, `z` → `W_z`, `n` → `W_hx`, `W_hc`" in torch_gru
    k = next(i for i, l in enumerate(keras_interop.LAYOUTS) if l.setting == "reset_after=False")
    layout = keras_interop.LAYOUTS[k]
    changed = type(layout)(**{**layout.__dict__, "blocks": (Block("z", "u"), *layout.blocks[1:])})
    monkeypatch.setattr(keras_interop, "LAYOUTS", (*keras_interop.LAYOUTS[:k], changed, *keras_interop.LAYOUTS[k + 1:]))
    assert "`z` → `W_u`" in next(r for r in table_rows("layers") if "reset_after=False" in r)
    docs = Path(__file__).resolve().parent.parent / "docs"
    for page in ("interop.md", "interop.fr.md"):
        text = (docs / page).read_text(encoding="utf-8")
        assert "{{ derive: conversions layers }}" in text and "{{ derive: conversions weights }}" in text
        assert "−W_u" not in text and "bias_ih_" not in text
    with pytest.raises(ValueError, match=r"^kind: expected 'weights' or 'layers', got 'gates'$"):
        table_rows("gates")


def test_a_stacked_torch_module_is_refused_in_one_line():
    """Two layers are two cells' params: no single Keras or ONNX layer holds them."""
    from derive.interop.convert import convert

    with pytest.raises(ValueError, match=r"^(module: unsupported GRU: num_layers=2|source: expected a single-layer)"):
        convert(torch.nn.GRU(N_X, N_H, num_layers=2), "keras")


def test_torch_relu_rnn_to_keras_and_onnx():
    """nn.RNN(nonlinearity='relu') is rnn_relu: Keras SimpleRNN(activation='relu'), ONNX RNN Relu."""
    need("keras")
    need("onnxruntime")
    from derive.interop.convert import convert
    from derive.interop.keras import from_keras
    from derive.interop.onnx import run
    from derive.interop.torch import from_torch

    torch.manual_seed(9)
    module = torch.nn.RNN(N_X, N_H, nonlinearity="relu", dtype=torch.float32)
    name, params = from_torch(module)
    assert name == "rnn_relu"
    layer = convert(module, "keras")
    assert layer.cell.activation.__name__ == "relu"
    back_name, back = from_keras(layer)
    assert back_name == name and all(np.array_equal(back[k], params[k]) for k in params)
    xs, state0 = _inputs(module, np.float32, seed=10)
    assert _gap(_run_torch(module, xs, state0), run(convert(module, "onnx"), xs, state0)) < 1e-6
