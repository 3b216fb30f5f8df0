"""Stacks and directions over the generated single-layer kernels.

A recurrent network as PyTorch builds it (``num_layers``, ``bidirectional``,
``batch_first``, ``bias``) is a composition of one cell's kernel: layer
``l`` reads the outputs of layer ``l − 1`` (both directions side by side);
a reversed direction is the same kernel run on the sequence read backwards,
its outputs put back in time order. Backward runs the same composition in
reverse: each layer's ``δxs`` (summed over its directions) is the ``dys`` of
the layer below. Nothing here knows a cell by name: sizes, states and which
parameters are biases come from the cell and its kernel.

>>> import numpy as np
>>> from derive import stack
>>> net = stack.init_stack("gru_torch", n_x=3, n_h=4, num_layers=2, bidirectional=True)
>>> ys, cache = stack.forward(net, np.zeros((5, 2, 3)))
>>> ys.shape, cache["final"]["c"].shape
((5, 2, 8), (4, 2, 4))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import kernels
from .cells import cell as get_cell
from .runtime import check_params


@dataclass(frozen=True)
class Stack:
    """The parameters of a stacked, possibly bidirectional network of one cell.

    ``layers[l][d]`` holds the params of layer ``l``, direction ``d`` (0:
    forward in time, 1: reversed), keyed like the cell's kernel; with
    ``bias=False`` the bias keys are left out (they are zeros, and their
    gradients are not reported). ``batch_first``: the sequences are
    (B, T, n) instead of (T, B, n), as for a torch module built with it.
    """

    cell: str
    layers: tuple[tuple[dict[str, np.ndarray], ...], ...]
    batch_first: bool = False
    bias: bool = True

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_directions(self) -> int:
        return len(self.layers[0]) if self.layers else 0

    @property
    def bidirectional(self) -> bool:
        return self.num_directions == 2


def bias_keys(cell_name: str) -> tuple[str, ...]:
    """The keys of the cell's bias parameters."""
    return tuple(k for k, p in get_cell(cell_name).params.items() if p.is_bias)


def init_stack(
    cell_name: str,
    n_x: int,
    n_h: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    bias: bool = True,
    seed: int = 0,
    dtype: Any = np.float64,
) -> Stack:
    """A stack initialised like the kernel's ``init_params`` (layer ``l``,
    direction ``d`` drawn with seed ``seed + 2l + d``); layers above the first
    read ``n_h`` values per direction."""
    kernel = kernels.load(cell_name)
    if not isinstance(num_layers, (int, np.integer)) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"num_layers: expected a positive integer, got {num_layers!r}")
    directions = 2 if bidirectional else 1
    drop = set() if bias else set(bias_keys(cell_name))
    layers = []
    for layer in range(num_layers):
        size = n_x if layer == 0 else directions * n_h
        row = []
        for d in range(directions):
            params = kernel.init_params(size, n_h, seed=seed + 2 * layer + d, dtype=dtype)
            row.append({k: v for k, v in params.items() if k not in drop})
        layers.append(tuple(row))
    return Stack(cell_name, tuple(layers), batch_first=bool(batch_first), bias=bool(bias))


def full_params(stack: Stack) -> tuple[ModuleType, list[list[dict[str, np.ndarray]]]]:
    """The kernel and the full params of every layer and direction (zero biases
    added when ``bias=False``), or a ValueError naming what is wrong."""
    if not isinstance(stack, Stack):
        raise ValueError(f"stack: expected a derive.stack.Stack, got {type(stack).__name__}")
    kernel = kernels.load(stack.cell)
    biases = bias_keys(stack.cell)
    if stack.num_layers < 1 or stack.num_directions not in (1, 2):
        raise ValueError(f"stack.layers: expected ≥ 1 layer of 1 or 2 directions, got {stack.num_layers} layers "
                         f"of {stack.num_directions}")
    full = []
    for layer, row in enumerate(stack.layers):
        if len(row) != stack.num_directions:
            raise ValueError(f"stack.layers[{layer}]: expected {stack.num_directions} directions like layer 0, got {len(row)}")
        out = []
        for d, params in enumerate(row):
            if not isinstance(params, Mapping):
                raise ValueError(f"stack.layers[{layer}][{d}]: expected a dict of arrays, got {type(params).__name__}")
            params = dict(params)
            if not stack.bias:
                given = [k for k in biases if k in params]
                if given:
                    raise ValueError(f"stack.layers[{layer}][{d}]: expected no bias with bias=False, got {given}")
                n_h = np.shape(params[next(k for k in kernel.PARAM_SHAPES if k not in biases)])[0] if params else 0
                dtype = np.asarray(next(iter(params.values()))).dtype if params else np.float64
                params.update({k: np.zeros(n_h, dtype) for k in biases})
            out.append(params)
        full.append(out)
    return kernel, full


def _time_major(name: str, array: np.ndarray, batch_first: bool) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        layout = "(B, T, n)" if batch_first else "(T, B, n)"
        raise ValueError(f"{name}: expected rank 3, shape {layout}{' (batch_first=True)' if batch_first else ''}, got shape {array.shape}")
    return array.transpose(1, 0, 2) if batch_first else array


def forward(
    stack: Stack, xs: np.ndarray, state0: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the stack over ``xs`` ((T, B, n_x), or (B, T, n_x) with ``batch_first``).

    ``state0`` maps each state of the cell to a (num_layers · directions, B,
    n_h) array (torch's ``h0`` layout: row ``l · directions + d``), zeros if
    None. Returns ``ys`` (T, B, directions · n_h) in the stack's layout, the
    last layer's outputs of both directions side by side, and the cache
    ``backward`` needs; ``cache['final']`` holds the final states in the
    layout of ``state0``.
    """
    kernel, full = full_params(stack)
    D = stack.num_directions
    inputs = _time_major("xs", xs, stack.batch_first)
    T, B = inputs.shape[:2]
    try:
        n_h = check_params(full[0][0], kernel.PARAM_SHAPES)[0]["n_h"]
    except ValueError as error:
        raise ValueError(f"stack.layers[0][0]: {error}") from None
    rows = stack.num_layers * D
    if state0 is not None:
        if not isinstance(state0, Mapping) or set(state0) != set(kernel.STATES):
            raise ValueError(f"state0: expected None or a dict with keys {list(kernel.STATES)}, got "
                             f"{list(state0) if isinstance(state0, Mapping) else type(state0).__name__}")
        state0 = {s: np.asarray(v) for s, v in state0.items()}
        for s, v in state0.items():
            if v.shape != (rows, B, n_h):
                raise ValueError(f"state0[{s!r}]: expected shape ({rows}, {B}, {n_h}) = (num_layers · directions, B, n_h), got {v.shape}")
    caches, finals = [], {s: [] for s in kernel.STATES}
    for layer, row in enumerate(full):
        outs, layer_caches = [], []
        for d, params in enumerate(row):
            s0 = None if state0 is None else {s: state0[s][layer * D + d] for s in kernel.STATES}
            try:
                ys, cache = kernel.forward(params, inputs if d == 0 else inputs[::-1], s0)
            except ValueError as error:
                raise ValueError(f"stack.layers[{layer}][{d}]: {error}") from None
            outs.append(ys if d == 0 else ys[::-1])
            layer_caches.append(cache)
            for s in kernel.STATES:
                finals[s].append(cache["final"][s])
        inputs = outs[0] if D == 1 else np.concatenate(outs, axis=2)
        caches.append(layer_caches)
    ys = inputs.transpose(1, 0, 2) if stack.batch_first else inputs
    ys = np.ascontiguousarray(ys) if stack.batch_first else ys
    ys.flags.writeable = False
    final = {s: np.stack(v) for s, v in finals.items()}
    return ys, {"stack": stack, "caches": caches, "final": final, "n_h": n_h}


def backward(
    cache: dict[str, Any], dys: np.ndarray, dstate: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Gradients of L = Σ ⟨dys, ys⟩ + Σ_s ⟨dstate[s], final[s]⟩.

    Returns ``{"layers": grads[l][d] (params' keys, biases left out when
    bias=False), "xs": δxs in the stack's layout, "<state>0": (num_layers ·
    directions, B, n_h) for each state}``.
    """
    if not isinstance(cache, dict) or "stack" not in cache or "caches" not in cache:
        raise ValueError("cache: expected the cache returned by derive.stack.forward(), got " + type(cache).__name__)
    stack: Stack = cache["stack"]
    kernel = kernels.load(stack.cell)
    D, n_h = stack.num_directions, cache["n_h"]
    d_out = _time_major("dys", dys, stack.batch_first)
    T, B = cache["caches"][0][0]["xs"].shape[:2]
    if d_out.shape != (T, B, D * n_h):
        want = (B, T, D * n_h) if stack.batch_first else (T, B, D * n_h)
        raise ValueError(f"dys: expected shape {want} like ys, got {np.shape(dys)}")
    rows = stack.num_layers * D
    if dstate is not None:
        if not isinstance(dstate, Mapping) or set(dstate) != set(kernel.STATES):
            raise ValueError(f"dstate: expected None or a dict with keys {list(kernel.STATES)}, got "
                             f"{list(dstate) if isinstance(dstate, Mapping) else type(dstate).__name__}")
        dstate = {s: np.asarray(v) for s, v in dstate.items()}
        for s, v in dstate.items():
            if v.shape != (rows, B, n_h):
                raise ValueError(f"dstate[{s!r}]: expected shape ({rows}, {B}, {n_h}) = (num_layers · directions, B, n_h), got {v.shape}")
    drop = set() if stack.bias else set(bias_keys(stack.cell))
    layers: list[tuple[dict[str, np.ndarray], ...]] = []
    d_state0 = {s: [None] * rows for s in kernel.STATES}
    for layer in range(stack.num_layers - 1, -1, -1):
        d_in = None
        row = []
        for d, layer_cache in enumerate(cache["caches"][layer]):
            dy = d_out[:, :, d * n_h:(d + 1) * n_h]
            ds = None if dstate is None else {s: dstate[s][layer * D + d] for s in kernel.STATES}
            grads = kernel.backward(layer_cache, dy if d == 0 else dy[::-1], ds)
            dx = grads.pop("xs")
            dx = dx if d == 0 else dx[::-1]
            d_in = dx if d_in is None else d_in + dx
            for s in kernel.STATES:
                d_state0[s][layer * D + d] = grads.pop(f"{s}0")
            row.append({k: v for k, v in grads.items() if k not in drop})
        layers.append(tuple(row))
        d_out = d_in
    d_xs = np.ascontiguousarray(d_out.transpose(1, 0, 2)) if stack.batch_first else np.ascontiguousarray(d_out)
    result: dict[str, Any] = {"layers": tuple(reversed(layers)), "xs": d_xs}
    result.update({f"{s}0": np.stack(v) for s, v in d_state0.items()})
    return result

