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

>>> import torch
>>> from derive.interop.torch import from_torch, to_torch
>>> name, params = from_torch(torch.nn.GRU(3, 4))
>>> name, sorted(params)[:3]
('gru_torch', ['W_hc', 'W_hx', 'W_r'])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

GATES: dict[str, tuple[str | None, ...]] = {
    "rnn": ("a",),
    "gru_torch": ("r", "z", None),  # None: the candidate n, whose halves stay apart
    "lstm": ("i", "f", "h", "o"),  # torch's g is the thread's candidate h
}
"""derive's gate suffix for each block of rows of torch's weights, in torch's order."""

SUPPORTED = {"RNN": "rnn", "GRU": "gru_torch", "LSTM": "lstm"}


def from_torch(module: torch.nn.Module) -> tuple[str, dict[str, np.ndarray]]:
    """The cell name and params computing what ``module`` computes.

    Supports single-layer, unidirectional ``nn.RNN`` (tanh), ``nn.GRU`` and
    ``nn.LSTM`` with biases and no projection, in float32 or float64 (kept).
    """
    name = _cell_name(module)
    tensors = {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
    return name, _split(name, tensors, merge=lambda b_ih, b_hh: b_ih + b_hh)


def grads_from_torch(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """The gradients of derive's params from the ``.grad`` of ``module``'s.

    Weights map like the params; a merged bias b = b_ih + b_hh has the
    gradient of either half (they are equal), not their sum.
    """
    name = _cell_name(module)
    grads = {}
    for key, p in module.named_parameters():
        if p.grad is None:
            raise ValueError(f"module.{key}.grad: expected a gradient (call backward first), got None")
        grads[key] = p.grad.detach().cpu().numpy().copy()
    return _split(name, grads, merge=lambda g_ih, g_hh: g_ih)


def to_state_dict(cell_name: str, params: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A state dict that the matching torch module's ``load_state_dict`` accepts."""
    import torch

    if cell_name not in GATES:
        raise ValueError(
            f"cell_name: expected one of {list(GATES)} (cells with a torch module), got {cell_name!r}"
        )
    from .. import cell
    from ..runtime import check_params

    specs = {}
    for key, p in cell(cell_name).params.items():
        specs[key] = (p.rows,) if p.is_bias else (p.rows, "+".join(p.cols))
    sizes, _ = check_params(params, specs)
    n_h = sizes["n_h"]
    w_ih, w_hh, b_ih, b_hh = [], [], [], []
    for gate in GATES[cell_name]:
        if gate is None:
            w_ih.append(params["W_hx"])
            w_hh.append(params["W_hc"])
            b_ih.append(params["b_hx"])
            b_hh.append(params["b_hc"])
        else:
            weight, bias = params[f"W_{gate}"], params[f"b_{gate}"]
            w_hh.append(weight[:, :n_h])
            w_ih.append(weight[:, n_h:])
            b_ih.append(bias)
            b_hh.append(np.zeros_like(bias))
    stacked = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    return {k: torch.from_numpy(np.concatenate(v, axis=0).copy()) for k, v in stacked.items()}


def to_torch(cell_name: str, params: dict[str, np.ndarray]) -> torch.nn.Module:
    """A new torch module (same dtype as ``params``) computing the cell."""
    import torch

    state = to_state_dict(cell_name, params)
    n_hidden, n_x = state["weight_hh_l0"].shape[1], state["weight_ih_l0"].shape[1]
    kind = {v: k for k, v in SUPPORTED.items()}[cell_name]
    extra = {"nonlinearity": "tanh"} if kind == "RNN" else {}
    module = getattr(torch.nn, kind)(n_x, n_hidden, dtype=state["weight_ih_l0"].dtype, **extra)
    module.load_state_dict(state)
    return module


def _cell_name(module: torch.nn.Module) -> str:
    """The derive cell of ``module``, or a ValueError saying what is unsupported."""
    import torch

    kind = next((k for k in SUPPORTED if type(module) is getattr(torch.nn, k)), None)
    if kind is None:
        raise ValueError(f"module: expected torch.nn.RNN, GRU or LSTM, got {type(module).__name__}")
    problems = []
    if kind == "RNN" and module.nonlinearity != "tanh":
        problems.append(f"nonlinearity={module.nonlinearity!r} (only 'tanh')")
    if module.num_layers != 1:
        problems.append(f"num_layers={module.num_layers} (only 1)")
    if module.bidirectional:
        problems.append("bidirectional=True (only unidirectional)")
    if not module.bias:
        problems.append("bias=False (only bias=True)")
    if getattr(module, "proj_size", 0):
        problems.append(f"proj_size={module.proj_size} (only 0)")
    dtype = module.weight_ih_l0.dtype
    if dtype not in (torch.float32, torch.float64):
        problems.append(f"dtype={dtype} (only float32, float64)")
    if problems:
        raise ValueError(f"module: unsupported {kind}: " + ", ".join(problems))
    return SUPPORTED[kind]


def _split(name: str, tensors: dict[str, np.ndarray], merge) -> dict[str, np.ndarray]:
    """Cut torch's stacked rows into derive's params (see the module docstring)."""
    w_ih, w_hh = tensors["weight_ih_l0"], tensors["weight_hh_l0"]
    b_ih, b_hh = tensors["bias_ih_l0"], tensors["bias_hh_l0"]
    n_h = w_hh.shape[1]
    params: dict[str, np.ndarray] = {}
    for k, gate in enumerate(GATES[name]):
        rows = slice(k * n_h, (k + 1) * n_h)
        if gate is None:
            params.update(W_hx=w_ih[rows], b_hx=b_ih[rows], W_hc=w_hh[rows], b_hc=b_hh[rows])
        else:
            params[f"W_{gate}"] = np.hstack([w_hh[rows], w_ih[rows]])
            params[f"b_{gate}"] = merge(b_ih[rows], b_hh[rows])
    return {k: np.ascontiguousarray(v) for k, v in params.items()}
