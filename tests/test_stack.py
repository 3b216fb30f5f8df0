"""Stacks and directions: derive.stack against the torch modules, float64.

Every combination of ``num_layers`` ∈ {1, 2, 3}, ``bidirectional`` and
``batch_first`` for ``nn.RNN`` (tanh and relu), ``nn.GRU`` and ``nn.LSTM``,
plus ``bias=False``: the module is converted by ``from_torch``, run by
``derive.stack``, and its outputs, final states and every gradient (each
layer's and direction's params, xs, h0, c0) compared with torch autograd on
the loss Σ ys ⊙ dys + Σ h_n ⊙ dh (+ Σ c_n ⊙ dc).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import derive
from derive import stack as st
from derive.interop.torch import TORCH_STATES, from_torch, grads_from_torch, to_torch

TOL = 1e-10
T, B, N_X, N_H = 5, 3, 4, 3
KINDS = {
    "rnn": lambda **kw: torch.nn.RNN(N_X, N_H, nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(N_X, N_H, nonlinearity="relu", **kw),
    "gru_torch": lambda **kw: torch.nn.GRU(N_X, N_H, **kw),
    "lstm": lambda **kw: torch.nn.LSTM(N_X, N_H, **kw),
}


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a) + np.abs(b))), 1e-300))


def check(label: str, ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape, f"{label}: shape {ours.shape}, torch {ref.shape}"
    err = rel_error(ours, ref)
    assert err < TOL, f"{label}: relative error {err:.3e} ≥ {TOL:.0e}"


def compare(module: torch.nn.Module, seed: int) -> None:
    """derive.stack on ``from_torch(module)`` against the module itself."""
    name, net = from_torch(module, as_stack=True)
    torch_states = TORCH_STATES[name]
    D = 2 if module.bidirectional else 1
    rows = module.num_layers * D
    rng = np.random.default_rng(seed)
    shape = (B, T, N_X) if module.batch_first else (T, B, N_X)
    xs = rng.normal(size=shape)
    state0 = {s: rng.normal(size=(rows, B, N_H)) for s in torch_states}
    out_shape = (B, T, D * N_H) if module.batch_first else (T, B, D * N_H)
    dys = rng.normal(size=out_shape)
    dstate = {s: rng.normal(size=(rows, B, N_H)) for s in torch_states}

    ys, cache = st.forward(net, xs, state0)
    grads = st.backward(cache, dys, dstate)

    x_t = torch.tensor(xs, requires_grad=True)
    s_t = {s: torch.tensor(v, requires_grad=True) for s, v in state0.items()}
    module.zero_grad()
    hx = tuple(s_t[s] for s in torch_states)
    y_t, last = module(x_t, hx if len(hx) > 1 else hx[0])
    last = last if isinstance(last, tuple) else (last,)
    loss = (y_t * torch.tensor(dys)).sum() + sum((v * torch.tensor(dstate[s])).sum() for s, v in zip(torch_states, last))
    loss.backward()

    tag = f"{name} L={module.num_layers} bi={module.bidirectional} bf={module.batch_first} bias={module.bias}"
    check(f"{tag} ys", ys, y_t.detach().numpy())
    for s, v in zip(torch_states, last):
        check(f"{tag} final {s}", cache["final"][s], v.detach().numpy())
    check(f"{tag} dxs", grads["xs"], x_t.grad.numpy())
    for s in torch_states:
        check(f"{tag} d{s}0", grads[f"{s}0"], s_t[s].grad.numpy())
    want = grads_from_torch(module, as_stack=True)
    assert len(grads["layers"]) == module.num_layers
    for layer, (row, want_row) in enumerate(zip(grads["layers"], want.layers)):
        assert len(row) == len(want_row) == D
        for d, (g, w) in enumerate(zip(row, want_row)):
            assert set(g) == set(w), f"{tag} layer {layer} dir {d}: keys {sorted(g)}, torch {sorted(w)}"
            for key in w:
                check(f"{tag} layer {layer} dir {d} d{key}", g[key], w[key])


GRID = list(itertools.product(KINDS, [1, 2, 3], [False, True], [False, True]))


@pytest.mark.parametrize(("kind", "num_layers", "bidirectional", "batch_first"), GRID,
                         ids=[f"{k}-L{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tm'}" for k, n, b, f in GRID])
def test_stack_matches_torch(kind: str, num_layers: int, bidirectional: bool, batch_first: bool) -> None:
    if kind not in derive.NAMES:
        pytest.skip(f"the {kind} cell is not in this version")
    torch.manual_seed(num_layers * 4 + 2 * bidirectional + batch_first)
    module = KINDS[kind](num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=torch.float64)
    compare(module, seed=num_layers)


@pytest.mark.parametrize("kind", list(KINDS))
def test_stack_without_bias_matches_torch(kind: str) -> None:
    if kind not in derive.NAMES:
        pytest.skip(f"the {kind} cell is not in this version")
    torch.manual_seed(11)
    module = KINDS[kind](num_layers=2, bidirectional=True, bias=False, dtype=torch.float64)
    name, net = from_torch(module)
    assert not net.bias and not any(k.startswith("b_") for row in net.layers for p in row for k in p)
    compare(module, seed=5)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("options", [
    {}, {"batch_first": True}, {"num_layers": 3}, {"bidirectional": True}, {"bias": False},
    {"num_layers": 2, "bidirectional": True, "batch_first": True, "bias": False},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_round_trip_keeps_every_option(kind: str, options: dict) -> None:
    """module → from_torch → to_torch: the same options and the same function
    (``batch_first=True`` used to be dropped: the outputs then differed by 0.337)."""
    if kind not in derive.NAMES:
        pytest.skip(f"the {kind} cell is not in this version")
    torch.manual_seed(3)
    module = KINDS[kind](dtype=torch.float64, **options)
    built = to_torch(*from_torch(module))
    for option in ("num_layers", "bidirectional", "batch_first", "bias", "nonlinearity", "hidden_size", "input_size"):
        assert getattr(built, option, None) == getattr(module, option, None), option
    xs = torch.randn(4, 2, N_X, dtype=torch.float64)
    with torch.no_grad():
        err = (built(xs)[0] - module(xs)[0]).abs().max().item()
    assert err < 1e-14, f"round trip changed the outputs by {err:.3g}"


def test_plain_module_gives_a_params_dict_and_options_a_stack() -> None:
    _, params = from_torch(torch.nn.GRU(3, 4))
    assert isinstance(params, dict)
    _, net = from_torch(torch.nn.GRU(3, 4, batch_first=True))
    assert isinstance(net, st.Stack) and net.batch_first


def test_stack_of_the_kernels_alone() -> None:
    """Without torch in the picture: one layer, one direction is the kernel itself;
    a reversed direction is the kernel on the reversed sequence."""
    from derive import kernels

    net = st.init_stack("gru", 3, 4, bidirectional=True, seed=2)
    xs = np.random.default_rng(0).normal(size=(6, 2, 3))
    ys, cache = st.forward(net, xs)
    kernel = kernels.load("gru")
    fwd, _ = kernel.forward(net.layers[0][0], xs)
    bwd, _ = kernel.forward(net.layers[0][1], xs[::-1])
    np.testing.assert_array_equal(ys[:, :, :4], fwd)
    np.testing.assert_array_equal(ys[:, :, 4:], bwd[::-1])
    assert cache["final"]["c"].shape == (2, 2, 4)


@pytest.mark.parametrize(("module", "option"), [
    (torch.nn.LSTM(3, 4, proj_size=2), "proj_size=2"),
    (torch.nn.GRU(3, 4, num_layers=2, dropout=0.5), "dropout=0.5 in training mode"),
])
def test_unsupported_options_are_refused_in_one_line(module: torch.nn.Module, option: str) -> None:
    with pytest.raises(ValueError, match=f"^module: unsupported [A-Z]+: {option}") as info:
        from_torch(module)
    assert "\n" not in str(info.value)


def test_dropout_in_eval_mode_is_no_dropout() -> None:
    torch.manual_seed(0)
    module = torch.nn.GRU(N_X, N_H, num_layers=2, dropout=0.5, dtype=torch.float64).eval()
    compare(module, seed=1)


def test_stack_errors_name_the_argument() -> None:
    net = st.init_stack("lstm", 3, 4, num_layers=2, batch_first=True)
    with pytest.raises(ValueError, match=r"xs: expected rank 3, shape \(B, T, n\) \(batch_first=True\)"):
        st.forward(net, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"state0\['c'\]: expected shape \(2, 5, 4\)"):
        st.forward(net, np.zeros((5, 6, 3)), {"a": np.zeros((2, 5, 4)), "c": np.zeros((1, 5, 4))})
    with pytest.raises(ValueError, match=r"stack.layers\[0\]\[0\]: xs: expected shape"):
        st.forward(net, np.zeros((5, 6, 7)))
    with pytest.raises(ValueError, match="num_layers: expected a positive integer, got 0"):
        st.init_stack("lstm", 3, 4, num_layers=0)
