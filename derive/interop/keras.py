"""Keras 3 ``SimpleRNN`` / ``GRU`` / ``LSTM`` ⇄ the params of ``rnn`` / ``gru`` or ``gru_torch`` / ``lstm``.

Keras stores a layer's gates side by side in columns: ``kernel`` (n_x, k·n_h)
acts on x as ``x @ kernel``, ``recurrent_kernel`` (n_h, k·n_h) on the state,
gate order z, r, h for the GRU and i, f, c, o for the LSTM. derive's weight of
a gate acts on [state, x] from the left, so it is
``hstack([recurrent_kernel[:, g].T, kernel[:, g].T])``.

Which GRU? ``GRU(reset_after=True)`` (Keras's default, cuDNN's) multiplies the
reset gate after the recurrent product and keeps two biases per gate
(``bias`` of shape (2, 3·n_h): input row, recurrent row): it is ``gru_torch``,
the two rows of the z and r gates adding up. ``GRU(reset_after=False)`` resets
before the product (one bias row): it is the thread's ``gru``, except that
Keras's z keeps the *old* state, h(t) = z ⊙ h(t−1) + (1 − z) ⊙ ĥ(t), where
``gru``'s G_u lets the new one in: G_u = 1 − z = σ(−(…)), so W_u and b_u are
z's weights negated (exact in floating point).

Keras runs on the PyTorch backend here: set ``KERAS_BACKEND=torch`` before
Keras is first imported (:func:`import_keras` does so when it is unset).

>>> from derive.interop.keras import LAYOUTS
>>> [(l.layer, l.cell) for l in LAYOUTS]
[('SimpleRNN', 'rnn'), ('GRU', 'gru_torch'), ('GRU', 'gru'), ('LSTM', 'lstm')]
"""

from __future__ import annotations

import ast
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .layouts import Block, Layout

if TYPE_CHECKING:
    import keras


LAYOUTS: tuple[Layout, ...] = (
    Layout("Keras", "SimpleRNN", "activation='tanh'", "rnn", (Block("h", "a"),), "no gate",
           "one bias, b_a"),
    Layout("Keras", "SimpleRNN", "activation='relu'", "rnn_relu", (Block("h", "a"),), "no gate",
           "one bias, b_a"),
    Layout("Keras", "GRU", "reset_after=True", "gru_torch", (Block("z", "z"), Block("r", "r"), Block("h", None)),
           "z = G_z keeps c(t−1)", "two rows (input, recurrent): z and r rows add up, h's stay apart"),
    Layout("Keras", "GRU", "reset_after=False", "gru", (Block("z", "u", -1), Block("r", "r"), Block("h", "h")),
           "z = 1 − G_u keeps c(t−1)", "one row"),
    Layout("Keras", "LSTM", "", "lstm", (Block("i", "i"), Block("f", "f"), Block("c", "h"), Block("o", "o")),
           "f = G_f keeps c(t−1)", "one row"),
)
"""Every Keras layer this module converts, with its gate blocks in Keras's column order."""

STATES = {"rnn": ("a",), "rnn_relu": ("a",), "gru": ("c",), "gru_torch": ("c",), "lstm": ("a", "c")}
"""derive's states in the order Keras returns and takes them (h, then c for the LSTM)."""


def import_keras() -> Any:
    """``keras``, on the PyTorch backend unless ``KERAS_BACKEND`` says otherwise.

    An ImportError says how to install it (the ``interop`` extra)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as e:
        raise ImportError(f"derive.interop.keras needs Keras 3: pip install 'derive[interop]' ({e})") from None
    return keras


def layout_of(cell_name: str) -> Layout:
    """The Keras layout computing ``cell_name``; a ValueError naming the cells Keras has otherwise."""
    for layout in LAYOUTS:
        if layout.cell == cell_name:
            return layout
    raise ValueError(f"cell_name: expected one of {[l.cell for l in LAYOUTS]} (cells with a Keras layer), got {cell_name!r}")


def from_keras(layer: keras.layers.Layer) -> tuple[str, dict[str, np.ndarray]]:
    """The cell name and params computing what ``layer`` computes (float32 or
    float64 kept). ``use_bias=False`` gives zero biases. A setting derive's
    cells do not compute raises one ValueError naming it; dropout is accepted
    (it changes training, not the function the weights compute)."""
    layout = _layout(layer)
    keras = import_keras()
    weights = get_weights(layer)
    kernel, recurrent = weights[0], weights[1]
    n_h = recurrent.shape[0]
    if layer.cell.use_bias:
        bias = weights[2].reshape(-1, kernel.shape[1])
    else:
        bias = np.zeros((2 if layout.split_candidate else 1, kernel.shape[1]), kernel.dtype)
    params: dict[str, np.ndarray] = {}
    for k, block in enumerate(layout.blocks):
        cols = slice(k * n_h, (k + 1) * n_h)
        if block.gate is None:
            params.update(W_hx=kernel[:, cols].T, b_hx=bias[0, cols], W_hc=recurrent[:, cols].T, b_hc=bias[1, cols])
        else:
            params[f"W_{block.gate}"] = block.sign * np.hstack([recurrent[:, cols].T, kernel[:, cols].T])
            params[f"b_{block.gate}"] = block.sign * bias[:, cols].sum(axis=0)
    return layout.cell, {k: np.ascontiguousarray(v) for k, v in params.items()}


def to_keras(cell_name: str, params: dict[str, np.ndarray], *, use_bias: bool = True) -> keras.layers.Layer:
    """A new built Keras layer (dtype of ``params``, ``return_sequences`` and
    ``return_state`` on) computing the cell. With ``use_bias=False`` every
    bias of ``params`` must be zero: a ValueError names the first that is not."""
    layout = layout_of(cell_name)
    from .. import cell
    from ..runtime import check_params

    specs = {k: (p.rows,) if p.is_bias else (p.rows, "+".join(p.cols)) for k, p in cell(cell_name).params.items()}
    sizes, dtype = check_params(params, specs)
    n_x, n_h = sizes["n_x"], sizes["n_h"]
    if not use_bias:
        for key in sorted(k for k, p in cell(cell_name).params.items() if p.is_bias):
            if np.any(params[key] != 0):
                raise ValueError(f"params[{key!r}]: expected zeros for a layer with use_bias=False, "
                                 f"got max |{key}| = {np.abs(params[key]).max():.3g}")
    kernel = np.empty((n_x, len(layout.blocks) * n_h), dtype)
    recurrent = np.empty((n_h, len(layout.blocks) * n_h), dtype)
    bias = np.zeros((2 if layout.split_candidate else 1, len(layout.blocks) * n_h), dtype)
    for k, block in enumerate(layout.blocks):
        cols = slice(k * n_h, (k + 1) * n_h)
        if block.gate is None:
            kernel[:, cols], recurrent[:, cols] = params["W_hx"].T, params["W_hc"].T
            bias[0, cols], bias[1, cols] = params["b_hx"], params["b_hc"]
        else:
            weight = block.sign * params[f"W_{block.gate}"]
            recurrent[:, cols], kernel[:, cols] = weight[:, :n_h].T, weight[:, n_h:].T
            bias[0, cols] = block.sign * params[f"b_{block.gate}"]
    keras = import_keras()
    options: dict[str, Any] = {"use_bias": use_bias, "return_sequences": True, "return_state": True,
                               "dtype": str(dtype)}
    if layout.setting:  # "reset_after=True", "activation='relu'": the layer's option
        key, _, value = layout.setting.partition("=")
        options[key] = ast.literal_eval(value)
    layer = getattr(keras.layers, layout.layer)(n_h, **options)
    layer.build((None, None, n_x))
    weights = [kernel, recurrent] + ([bias if layout.split_candidate else bias[0]] if use_bias else [])
    layer.set_weights(weights)
    return layer


def get_weights(layer: keras.layers.Layer) -> list[np.ndarray]:
    """The layer's weights as NumPy arrays (kernel, recurrent kernel[, bias]), copied.

    (Keras's own ``get_weights`` calls ``np.array`` on its variables, which
    NumPy 2 deprecates; this reads their values through ``keras.ops``.)"""
    return [_numpy(w.value) for w in layer.cell.weights]


def _numpy(value: Any) -> np.ndarray:
    """A backend tensor as a NumPy array (a copy). A torch tensor goes through
    ``.numpy()``: ``np.array(tensor)`` warns under NumPy 2."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy().copy()
    return np.array(value)


def run(layer: keras.layers.Layer, xs: np.ndarray, state0: dict[str, np.ndarray] | None = None
        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``layer`` in derive's layout: ``xs`` (T, B, n_x) time-major, ``state0``
    keyed by derive's state names; returns ``ys`` (T, B, n_h) and the final
    states, as NumPy arrays. The layer must return sequences and states.

    Keras 3 on a backend other than TensorFlow promotes float64 to float32
    in ``keras.ops.matmul`` (``BIT64_TO_BIT32_DTYPE``, to follow JAX), so a
    float64 layer whose cell multiplies through ``keras.ops`` (``SimpleRNN``,
    ``GRU(reset_after=False)``) is only float32-accurate (~1e-7); ``GRU(reset_after=True)``
    and ``LSTM`` run torch's fused kernels and keep float64."""
    layout = _layout(layer)
    if not (layer.return_sequences and layer.return_state):
        raise ValueError("layer: expected return_sequences=True and return_state=True (as to_keras builds it)")
    states = STATES[layout.cell]
    kwargs = {}
    if state0 is not None:
        kwargs["initial_state"] = [np.asarray(state0[s]) for s in states]
    out = layer(np.ascontiguousarray(np.swapaxes(xs, 0, 1)), **kwargs)
    out = [_numpy(o) for o in out]
    return np.swapaxes(out[0], 0, 1), dict(zip(states, out[1:], strict=True))


def _layout(layer: Any) -> Layout:
    """The layout of ``layer``, or one ValueError listing what derive does not compute."""
    keras = import_keras()
    kind = next((k for k in ("SimpleRNN", "GRU", "LSTM") if type(layer) is getattr(keras.layers, k)), None)
    if kind is None:
        raise ValueError(f"layer: expected keras.layers.SimpleRNN, GRU or LSTM, got {type(layer).__name__}")
    problems = []
    activation = keras.activations.serialize(layer.cell.activation)
    from ..cells import names

    allowed = [a for a, cell_name in (("tanh", "rnn"), ("relu", "rnn_relu")) if cell_name in names()]
    if activation not in (allowed if kind == "SimpleRNN" else ["tanh"]):
        only = " or ".join(repr(a) for a in allowed) if kind == "SimpleRNN" else "'tanh'"
        problems.append(f"activation={activation!r} (only {only})")
    if kind != "SimpleRNN":
        recurrent = keras.activations.serialize(layer.cell.recurrent_activation)
        if recurrent != "sigmoid":
            problems.append(f"recurrent_activation={recurrent!r} (only 'sigmoid')")
    for option in ("go_backwards", "stateful", "unroll"):
        if getattr(layer, option):
            problems.append(f"{option}=True (only False)")
    if layer.dtype not in ("float32", "float64"):
        problems.append(f"dtype={layer.dtype} (only float32, float64)")
    if not layer.built:
        problems.append("not built (call it once or build((None, None, n_x)) first)")
    if problems:
        raise ValueError(f"layer: unsupported {kind}: " + ", ".join(problems))
    setting = (f"reset_after={layer.cell.reset_after}" if kind == "GRU"
               else f"activation={activation!r}" if kind == "SimpleRNN" else None)
    return next(l for l in LAYOUTS if l.layer == kind and (setting is None or l.setting == setting))
