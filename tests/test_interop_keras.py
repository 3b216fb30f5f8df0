"""Keras 3 layers (torch backend) ⇄ derive's params, proved in float64."""

from __future__ import annotations

import numpy as np
import pytest
from interop_support import need

from derive import kernels

T, B, N_X, N_H = 7, 3, 4, 5


def _keras_layer(kind: str, seed: int, **options):
    """A built float64 Keras layer with random weights and nonzero biases."""
    keras = need("keras")
    layer = getattr(keras.layers, kind)(N_H, return_sequences=True, return_state=True, dtype="float64", **options)
    layer.build((None, None, N_X))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-0.8, 0.8, w.shape) for w in layer.weights])
    return layer


def _inputs(cell_name: str, seed: int):
    from derive.interop.keras import STATES

    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(T, B, N_X))
    state0 = {s: rng.uniform(-0.9, 0.9, (B, N_H)) for s in STATES[cell_name]}
    return xs, state0


def _gap(layer, name, params, seed=1):
    from derive.interop.keras import run

    xs, state0 = _inputs(name, seed)
    ys, cache = kernels.load(name).forward(params, xs, state0)
    ys_k, final_k = run(layer, xs, state0)
    return max([np.abs(ys - ys_k).max()] + [np.abs(cache["final"][s] - final_k[s]).max() for s in final_k])


# Keras 3 computes these three layers through keras.ops.matmul, which on the torch
# backend returns float32 for float64 operands (BIT64_TO_BIT32_DTYPE): ~1e-7.
KERAS_FLOAT32_MATMUL = {"rnn": 1e-6, "rnn_relu": 1e-6, "gru": 1e-6}


@pytest.mark.parametrize(("kind", "options", "expected"), [
    ("GRU", {"reset_after": True}, "gru_torch"),
    ("LSTM", {}, "lstm"),
])
def test_keras_layer_equals_derive_cell(kind, options, expected):
    from derive.interop.keras import from_keras

    layer = _keras_layer(kind, 0, **options)
    name, params = from_keras(layer)
    assert name == expected
    assert _gap(layer, name, params) < 1e-10


def keras_activation(layer) -> str:
    keras = need("keras")
    return keras.activations.serialize(layer.cell.activation)


def _keras_transcription(layer, xs, state0):
    """Keras's documented SimpleRNN / GRU(reset_after=False) step, in NumPy
    float64 (for the GRU, z keeps the old state)."""
    from derive.interop.keras import get_weights

    kernel, recurrent, bias = get_weights(layer)
    n = recurrent.shape[0]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, ys = next(iter(state0.values())), []
    for x in xs:
        if kernel.shape[1] == n:
            z = x @ kernel + bias + h @ recurrent
            h = np.maximum(z, 0) if keras_activation(layer) == "relu" else np.tanh(z)
        else:
            xz, xr, xh = (x @ kernel[:, k * n:(k + 1) * n] + bias[k * n:(k + 1) * n] for k in range(3))
            z = sig(xz + h @ recurrent[:, :n])
            r = sig(xr + h @ recurrent[:, n:2 * n])
            hh = np.tanh(xh + (r * h) @ recurrent[:, 2 * n:])
            h = z * h + (1 - z) * hh
        ys.append(h)
    return np.array(ys)


@pytest.mark.parametrize(("kind", "options", "expected"), [
    ("SimpleRNN", {}, "rnn"),
    ("SimpleRNN", {"activation": "relu"}, "rnn_relu"),
    ("GRU", {"reset_after": False}, "gru"),
])
def test_keras_layers_through_keras_ops(kind, options, expected):
    """SimpleRNN is `rnn`, GRU(reset_after=False) is `gru` with G_u = 1 − z: exact
    against the formula Keras documents; Keras's own float64 path is ~1e-7 away
    from that formula (its matmul returns float32, see KERAS_FLOAT32_MATMUL)."""
    from derive.interop.keras import from_keras

    layer = _keras_layer(kind, 2, **options)
    name, params = from_keras(layer)
    assert name == expected
    xs, state0 = _inputs(name, 3)
    ys, _ = kernels.load(name).forward(params, xs, state0)
    assert np.abs(ys - _keras_transcription(layer, xs, state0)).max() < 1e-12
    assert _gap(layer, name, params, seed=3) < KERAS_FLOAT32_MATMUL[name]


@pytest.mark.parametrize("name", ["rnn", "rnn_relu", "gru", "gru_torch", "lstm"])
def test_to_keras_then_back_is_exact(name):
    need("keras")
    from derive.interop.keras import from_keras, to_keras

    params = kernels.load(name).init_params(N_X, N_H, seed=4)
    layer = to_keras(name, params)
    back_name, back = from_keras(layer)
    assert back_name == name
    assert sorted(back) == sorted(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)
    assert _gap(layer, name, params) < KERAS_FLOAT32_MATMUL.get(name, 1e-10)


@pytest.mark.parametrize(("kind", "options"), [("SimpleRNN", {}), ("GRU", {"reset_after": True}),
                                               ("GRU", {"reset_after": False}), ("LSTM", {})])
def test_use_bias_false(kind, options):
    from derive.interop.keras import from_keras, get_weights, to_keras

    layer = _keras_layer(kind, 5, use_bias=False, **options)
    name, params = from_keras(layer)
    assert all(not np.any(params[k]) for k in params if k.startswith("b_"))
    assert _gap(layer, name, params) < KERAS_FLOAT32_MATMUL.get(name, 1e-10)
    again = to_keras(name, params, use_bias=False)
    assert not again.cell.use_bias
    np.testing.assert_array_equal(get_weights(again)[1], get_weights(layer)[1])


def test_use_bias_false_refuses_nonzero_biases():
    from derive.interop.keras import to_keras

    params = kernels.load("lstm").init_params(N_X, N_H, seed=6)
    with pytest.raises(ValueError, match=r"^params\['b_f'\]: expected zeros for a layer with use_bias=False"):
        to_keras("lstm", params, use_bias=False)


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("SimpleRNN", {"activation": "sigmoid"}, "unsupported SimpleRNN: activation='sigmoid' (only 'tanh' or 'relu')"),
    ("GRU", {"activation": "relu"}, "unsupported GRU: activation='relu' (only 'tanh')"),
    ("GRU", {"recurrent_activation": "hard_sigmoid"},
     "unsupported GRU: recurrent_activation='hard_sigmoid' (only 'sigmoid')"),
    ("LSTM", {"unroll": True}, "unsupported LSTM: unroll=True (only False)"),
    ("LSTM", {"go_backwards": True}, "unsupported LSTM: go_backwards=True (only False)"),
    ("GRU", {"stateful": True}, "unsupported GRU: stateful=True (only False)"),
])
def test_unsupported_options_are_refused_in_one_line(kind, options, message):
    from derive.interop.keras import from_keras

    keras = need("keras")
    layer = getattr(keras.layers, kind)(N_H, dtype="float64", **options)
    layer.build((B, None, N_X))
    with pytest.raises(ValueError) as info:
        from_keras(layer)
    assert str(info.value) == "layer: " + message
    assert "\n" not in str(info.value)


def test_not_a_recurrent_layer_is_refused():
    from derive.interop.keras import from_keras, to_keras

    keras = need("keras")
    with pytest.raises(ValueError, match=r"^layer: expected keras.layers.SimpleRNN, GRU or LSTM, got Dense$"):
        from_keras(keras.layers.Dense(3))
    with pytest.raises(ValueError, match=r"^cell_name: expected one of .* got 'gru_simple'$"):
        to_keras("gru_simple", kernels.load("gru_simple").init_params(2, 3))
