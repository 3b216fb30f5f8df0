"""``torch.nn.RNN`` / ``GRU`` / ``LSTM`` ⇄ the params of ``rnn`` / ``gru_torch`` / ``lstm``.

PyTorch stacks the gates' rows in one ``weight_ih_l0`` (acting on x) and one
``weight_hh_l0`` (acting on the state), gate order r, z, n for the GRU and
i, f, g, o for the LSTM. derive's weight of a gate acts on the concatenation
[state, x], so it is ``hstack([W_h·, W_i·])`` of the gate's rows, and the
two biases add up: b_r = b_ir + b_hr. The GRU candidate n is the exception:
the reset gate multiplies W_hn c + b_hn, so its two halves stay apart
(W_hx = W_in, b_hx = b_in, W_hc = W_hn, b_hc = b_hn).

Going back, a merged bias goes whole into ``bias_ih_l0`` and ``bias_hh_l0``
gets zeros: a different split, the same function.

A module with ``num_layers > 1``, ``bidirectional=True``,
``batch_first=True`` or ``bias=False`` becomes a :class:`derive.stack.Stack`
(one params dict per layer and direction, the layout and the bias setting
kept), which :mod:`derive.stack` runs and :func:`to_torch` turns back into
the same module. ``proj_size > 0`` and inter-layer dropout in training mode
are refused with one line naming the option.

>>> import torch
>>> from derive.interop.torch import from_torch, to_torch
>>> name, params = from_torch(torch.nn.GRU(3, 4))
>>> name, sorted(params)[:3]
('gru_torch', ['W_hc', 'W_hx', 'W_r'])
>>> name, net = from_torch(torch.nn.LSTM(3, 4, num_layers=2, batch_first=True))
>>> net.num_layers, net.batch_first, to_torch(name, net).batch_first
(2, True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..stack import Stack, full_params

if TYPE_CHECKING:
    import torch

GATES: dict[str, tuple[str | None, ...]] = {
    "rnn": ("a",),
    "rnn_relu": ("a",),
    "gru_torch": ("r", "z", None),  # None: the candidate n, whose halves stay apart
    "lstm": ("i", "f", "h", "o"),  # torch's g is the thread's candidate h
}
"""derive's gate suffix for each block of rows of torch's weights, in torch's order."""

MODULES: dict[str, tuple[str, dict[str, Any]]] = {
    "rnn": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "gru_torch": ("GRU", {}),
    "lstm": ("LSTM", {}),
}
"""The torch module (class name and options) that computes each cell."""

TORCH_STATES: dict[str, tuple[str, ...]] = {"rnn": ("a",), "rnn_relu": ("a",), "gru_torch": ("c",), "lstm": ("a", "c")}
"""The cell's states that torch's ``h`` (and the LSTM's ``c``) are, in torch's order."""

SUPPORTED = {"RNN": "rnn", "GRU": "gru_torch", "LSTM": "lstm"}


def from_torch(module: torch.nn.Module, *, as_stack: bool = False) -> tuple[str, dict[str, np.ndarray] | Stack]:
    """The cell name and params computing what ``module`` computes.

    A single-layer, unidirectional, time-major module with biases gives a
    params dict for the cell's kernel; any other (or ``as_stack=True``) a
    :class:`~derive.stack.Stack` for :mod:`derive.stack`. float32 and float64
    are kept. A pruned module gives its pruned weights.
    """
    name = _cell_name(module)
    stack = _read(module, name, lambda key, tensor: tensor.detach().cpu().numpy().copy(),
                  merge=lambda b_ih, b_hh: b_ih + b_hh)
    return name, stack if as_stack or not _plain(module) else stack.layers[0][0]


def grads_from_torch(module: torch.nn.Module, *, as_stack: bool = False) -> dict[str, np.ndarray] | Stack:
    """The gradients of derive's params from the ``.grad`` of ``module``'s,
    a dict or a :class:`~derive.stack.Stack` as :func:`from_torch` gives.

    Weights map like the params; a merged bias b = b_ih + b_hh has the
    gradient of either half (they are equal), not their sum.
    """
    name = _cell_name(module)
    parameters = dict(module.named_parameters())

    def grad(key: str, tensor: torch.Tensor) -> np.ndarray:
        if key not in parameters:
            raise ValueError(f"module.{key}: expected a parameter, got a pruned weight ({key}_orig times a mask); "
                             "its .grad is not the weight's gradient: call torch.nn.utils.prune.remove first")
        p = parameters[key]
        if not p.requires_grad:
            raise ValueError(f"module.{key}: expected a gradient, got none: the parameter is frozen (requires_grad=False)")
        if p.grad is None:
            raise ValueError(f"module.{key}.grad: expected a gradient (call backward first), got None")
        return p.grad.detach().cpu().numpy().copy()

    stack = _read(module, name, grad, merge=lambda g_ih, g_hh: g_ih)
    return stack if as_stack or not _plain(module) else stack.layers[0][0]


def to_state_dict(cell_name: str, params: dict[str, np.ndarray] | Stack) -> dict[str, torch.Tensor]:
    """A state dict that the matching torch module's ``load_state_dict`` accepts."""
    import torch

    from ..cells import NAMES
    from ..runtime import check_params

    known = [c for c in GATES if c in NAMES]
    if cell_name not in known:
        raise ValueError(f"cell_name: expected one of {known} (cells with a torch module), got {cell_name!r}")
    stack = _as_stack(cell_name, params)
    kernel, full = full_params(stack)
    state: dict[str, torch.Tensor] = {}
    for layer, row in enumerate(full):
        for d, layer_params in enumerate(row):
            where = "params" if isinstance(params, dict) else f"params.layers[{layer}][{d}]"
            try:
                check_params(layer_params, kernel.PARAM_SHAPES)
            except ValueError as error:
                raise ValueError(f"{where}: {error}" if where != "params" else str(error)) from None
            suffix = _suffix(layer, d)
            for key, value in _join(cell_name, layer_params, stack.bias).items():
                state[f"{key}{suffix}"] = torch.from_numpy(value)
    return state


def to_torch(cell_name: str, params: dict[str, np.ndarray] | Stack) -> torch.nn.Module:
    """A new torch module (same dtype as ``params``) computing the cell, with the
    stack's ``num_layers``, ``bidirectional``, ``batch_first`` and ``bias``."""
    import torch

    state = to_state_dict(cell_name, params)
    stack = _as_stack(cell_name, params)
    n_hidden, n_x = state["weight_hh_l0"].shape[1], state["weight_ih_l0"].shape[1]
    kind, options = MODULES[cell_name]
    module = getattr(torch.nn, kind)(
        n_x, n_hidden, num_layers=stack.num_layers, bidirectional=stack.bidirectional,
        batch_first=stack.batch_first, bias=stack.bias, dtype=state["weight_ih_l0"].dtype, **options,
    )
    module.load_state_dict(state)
    return module


def _as_stack(cell_name: str, params: dict[str, np.ndarray] | Stack) -> Stack:
    if isinstance(params, Stack):
        if params.cell != cell_name:
            raise ValueError(f"params: expected a stack of {cell_name!r}, got one of {params.cell!r}")
        return params
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays or a derive.stack.Stack, got {type(params).__name__}")
    return Stack(cell_name, ((params,),))


def _plain(module: torch.nn.Module) -> bool:
    """One layer, one direction, time-major, with biases: a params dict says it all."""
    return module.num_layers == 1 and not module.bidirectional and not module.batch_first and module.bias


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _cell_name(module: torch.nn.Module) -> str:
    """The derive cell of ``module``, or a ValueError saying what is unsupported."""
    import torch

    from ..cells import NAMES

    kind = next((k for k in SUPPORTED if type(module) is getattr(torch.nn, k)), None)
    if kind is None:
        raise ValueError(f"module: expected torch.nn.RNN, GRU or LSTM, got {type(module).__name__}")
    name = next(c for c, (k, options) in MODULES.items()
                if k == kind and all(getattr(module, o) == v for o, v in options.items()))
    problems = []
    if name not in NAMES:
        problems.append(f"nonlinearity={module.nonlinearity!r} (needs the {name} cell, not in this version of derive)")
    if getattr(module, "proj_size", 0):
        problems.append(f"proj_size={module.proj_size} (only 0)")
    if module.dropout > 0 and module.training and module.num_layers > 1:
        problems.append(f"dropout={module.dropout} in training mode (only 0, or call module.eval())")
    weight = getattr(module, "weight_ih_l0")
    if weight.is_meta:
        problems.append("device='meta' (parameters without values: load real weights first)")
    dtype = weight.dtype
    if dtype not in (torch.float32, torch.float64):
        problems.append(f"dtype={dtype} (only float32, float64)")
    if problems:
        raise ValueError(f"module: unsupported {kind}: " + ", ".join(problems))
    return name


def _read(module: torch.nn.Module, name: str, value: Callable[[str, Any], np.ndarray], merge) -> Stack:  # noqa: ANN001
    """Every layer and direction of ``module`` as derive's params (or grads)."""
    layers = []
    for layer in range(module.num_layers):
        row = []
        for d in range(2 if module.bidirectional else 1):
            suffix = _suffix(layer, d)
            keys = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if module.bias else ("weight_ih", "weight_hh")
            tensors = {k: value(f"{k}{suffix}", getattr(module, f"{k}{suffix}")) for k in keys}
            row.append(_split(name, tensors, merge))
        layers.append(tuple(row))
    return Stack(name, tuple(layers), batch_first=bool(module.batch_first), bias=bool(module.bias))


def _split(name: str, tensors: dict[str, np.ndarray], merge) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Cut torch's stacked rows into derive's params (see the module docstring);
    without ``bias_ih``/``bias_hh`` the params have no biases."""
    w_ih, w_hh = tensors["weight_ih"], tensors["weight_hh"]
    b_ih, b_hh = tensors.get("bias_ih"), tensors.get("bias_hh")
    n_h = w_hh.shape[1]
    params: dict[str, np.ndarray] = {}
    for k, gate in enumerate(GATES[name]):
        rows = slice(k * n_h, (k + 1) * n_h)
        if gate is None:
            params.update(W_hx=w_ih[rows], W_hc=w_hh[rows])
            if b_ih is not None:
                params.update(b_hx=b_ih[rows], b_hc=b_hh[rows])
        else:
            params[f"W_{gate}"] = np.hstack([w_hh[rows], w_ih[rows]])
            if b_ih is not None:
                params[f"b_{gate}"] = merge(b_ih[rows], b_hh[rows])
    return {k: np.ascontiguousarray(v) for k, v in params.items()}


def _join(cell_name: str, params: dict[str, np.ndarray], bias: bool) -> dict[str, np.ndarray]:
    """The inverse of :func:`_split` for one layer and direction: torch's four
    (or, without biases, two) stacked tensors, keys without the ``_l0`` suffix."""
    params = {k: np.asarray(v) for k, v in params.items()}
    n_h = params[next(iter(params))].shape[0]
    w_ih, w_hh, b_ih, b_hh = [], [], [], []
    for gate in GATES[cell_name]:
        if gate is None:
            w_ih.append(params["W_hx"])
            w_hh.append(params["W_hc"])
            b_ih.append(params["b_hx"])
            b_hh.append(params["b_hc"])
        else:
            weight, b = params[f"W_{gate}"], params[f"b_{gate}"]
            w_hh.append(weight[:, :n_h])
            w_ih.append(weight[:, n_h:])
            b_ih.append(b)
            b_hh.append(np.zeros_like(b))
    stacked = {"weight_ih": w_ih, "weight_hh": w_hh}
    if bias:
        stacked.update(bias_ih=b_ih, bias_hh=b_hh)
    return {k: np.concatenate(v, axis=0).copy() for k, v in stacked.items()}
