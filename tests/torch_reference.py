"""PyTorch references for the parity tests, written from the cells' equations.

``gru_simple`` and ``gru`` have no torch module: their forwards below are
written from the thread's equations (see notes in each function), not from
derive's code, and torch autograd differentiates them. ``rnn``,
``gru_torch`` and ``lstm`` run the torch modules themselves.

Vectors are rows here (a batch is (B, n)), so ``W [c; x]`` is
``cat([c, x]) @ W.T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from derive.interop.torch import grads_from_torch, to_torch

STATES: dict[str, tuple[str, ...]] = {
    "rnn": ("a",),
    "gru_simple": ("c",),
    "gru": ("c",),
    "gru_torch": ("c",),
    "lstm": ("a", "c"),  # torch's (h, c)
}
"""The recurrent states of each cell, in torch's order for the LSTM."""

MODULE_CELLS = ("rnn", "gru_torch", "lstm")


def _affine(W: torch.Tensor, b: torch.Tensor, *parts: torch.Tensor) -> torch.Tensor:
    """W [parts…] + b for a batch of row vectors."""
    return torch.cat(parts, dim=1) @ W.T + b


def gru_simple_forward(p: dict[str, torch.Tensor], xs: torch.Tensor, c: torch.Tensor):
    """Gu = σ(W_u [c(t−1), x] + b_u); h = tanh(W_h [c(t−1), x] + b_h);
    c(t) = Gu ⊙ h + (1 − Gu) ⊙ c(t−1). Returns (ys, {"c": c(T)})."""
    ys = []
    for x in xs:
        Gu = torch.sigmoid(_affine(p["W_u"], p["b_u"], c, x))
        h = torch.tanh(_affine(p["W_h"], p["b_h"], c, x))
        c = Gu * h + (1 - Gu) * c
        ys.append(c)
    return torch.stack(ys), {"c": c}


def gru_forward(p: dict[str, torch.Tensor], xs: torch.Tensor, c: torch.Tensor):
    """Cho et al. (2014 v3): the reset gate filters c(t−1) before the
    candidate's matrix product. Returns (ys, {"c": c(T)})."""
    ys = []
    for x in xs:
        Gr = torch.sigmoid(_affine(p["W_r"], p["b_r"], c, x))
        Gu = torch.sigmoid(_affine(p["W_u"], p["b_u"], c, x))
        h = torch.tanh(_affine(p["W_h"], p["b_h"], Gr * c, x))
        c = Gu * h + (1 - Gu) * c
        ys.append(c)
    return torch.stack(ys), {"c": c}


INDEPENDENT = {"gru_simple": gru_simple_forward, "gru": gru_forward}


@dataclass
class TorchRun:
    """Outputs and gradients of one torch run, as numpy arrays keyed like
    derive's kernels (params by name, "xs", "<state>0")."""

    ys: np.ndarray
    final: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]


def run(
    cell_name: str,
    params: dict[str, np.ndarray],
    xs: np.ndarray,
    state0: dict[str, np.ndarray] | None,
    dys: np.ndarray,
    dstate: dict[str, np.ndarray] | None,
    module: torch.nn.Module | None = None,
) -> TorchRun:
    """Forward, then backward of loss = Σ ys ⊙ dys + Σ_s final_s ⊙ dstate_s.

    For ``rnn``/``gru_torch``/``lstm``, ``module`` (default:
    ``to_torch(cell_name, params)``) computes the forward; for
    ``gru_simple``/``gru`` the independent forward above does. A ``None``
    ``state0`` is zeros, whose gradient is still returned.
    """
    names = STATES[cell_name]
    dtype = torch.float64 if xs.dtype == np.float64 else torch.float32
    B, n_h = dys.shape[1], dys.shape[2]
    x_t = torch.tensor(xs, dtype=dtype, requires_grad=True)
    s0 = {s: torch.tensor(state0[s] if state0 else np.zeros((B, n_h)), dtype=dtype, requires_grad=True) for s in names}

    if cell_name in MODULE_CELLS:
        module = module if module is not None else to_torch(cell_name, params)
        module.zero_grad()
        h0 = [s0[s].unsqueeze(0) for s in names]
        ys, last = module(x_t, tuple(h0) if cell_name == "lstm" else h0[0])
        last = last if cell_name == "lstm" else (last,)
        final = {s: v.squeeze(0) for s, v in zip(names, last)}
    else:
        p_t = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in params.items()}
        ys, final = INDEPENDENT[cell_name](p_t, x_t, *(s0[s] for s in names))

    loss = (ys * torch.tensor(dys, dtype=dtype)).sum()
    if dstate is not None:
        loss = loss + sum((final[s] * torch.tensor(dstate[s], dtype=dtype)).sum() for s in names)
    loss.backward()

    grads = grads_from_torch(module) if cell_name in MODULE_CELLS else {k: v.grad.numpy() for k, v in p_t.items()}
    grads["xs"] = x_t.grad.numpy()
    grads.update({f"{s}0": s0[s].grad.numpy() for s in names})
    return TorchRun(ys.detach().numpy(), {s: v.detach().numpy() for s, v in final.items()}, grads)
