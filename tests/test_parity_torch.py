"""Parity with PyTorch in float64: outputs, final states and every gradient.

``rnn``, ``gru_torch`` and ``lstm`` are compared with ``nn.RNN``/``nn.GRU``/
``nn.LSTM`` modules initialised by torch and converted by
:func:`derive.interop.torch.from_torch`; ``gru_simple`` and ``gru`` with
torch autograd over the independent forwards of ``torch_reference``. The
loss is Σ ys ⊙ dys (+ Σ final ⊙ dstate) with random dys, dstate.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import derive
from derive import kernels
from derive.interop.torch import from_torch, grads_from_torch, to_state_dict, to_torch
from torch_reference import MODULE_CELLS, STATES, run

TOL = 1e-10
MODULES = {"rnn": torch.nn.RNN, "gru_torch": torch.nn.GRU, "lstm": torch.nn.LSTM}
CASES = [  # seed, T, B, n_x, n_h
    (0, 1, 1, 3, 4),
    (1, 1, 3, 2, 2),
    (2, 6, 1, 5, 3),
    (3, 9, 4, 4, 6),
]


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a − b| / max(|a| + |b|), the scale-free error CS231n reports."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a) + np.abs(b))), 1e-300))


def assert_close(label: str, ours: np.ndarray, ref: np.ndarray, tol: float = TOL) -> None:
    assert ours.shape == ref.shape, f"{label}: shape {ours.shape}, torch {ref.shape}"
    assert ours.dtype == np.float64, f"{label}: dtype {ours.dtype}, expected float64"
    err = rel_error(ours, ref)
    assert err < tol, f"{label}: relative error {err:.3e} ≥ tolerance {tol:.0e}"


def _inputs(cell_name: str, seed: int, T: int, B: int, n_x: int, n_h: int, with_dstate: bool):
    rng = np.random.default_rng(1000 + seed)
    xs = rng.normal(size=(T, B, n_x))
    # an even seed leaves state0 to its zeros default, an odd one gives it
    state0 = None if seed % 2 == 0 else {s: rng.normal(size=(B, n_h)) for s in STATES[cell_name]}
    dys = rng.normal(size=(T, B, n_h))
    dstate = {s: rng.normal(size=(B, n_h)) for s in STATES[cell_name]} if with_dstate else None
    return xs, state0, dys, dstate


def _compare(backend: str, cell_name: str, params, xs, state0, dys, dstate, module=None) -> None:
    kernel = kernels.load(cell_name, backend)
    ys, cache = kernel.forward(params, xs, state0)
    grads = kernel.backward(cache, dys, dstate)
    ref = run(cell_name, params, xs, state0, dys, dstate, module)
    assert_close(f"{cell_name} ys", ys, ref.ys)
    assert set(cache["final"]) == set(ref.final), f"{cell_name} final states {sorted(cache['final'])}"
    for s in ref.final:
        assert_close(f"{cell_name} final {s}", cache["final"][s], ref.final[s])
    assert set(grads) == set(ref.grads), f"{cell_name}: gradients {sorted(grads)}, expected {sorted(ref.grads)}"
    for key in ref.grads:
        assert_close(f"{cell_name} d{key}", grads[key], ref.grads[key])


@pytest.mark.parametrize("with_dstate", [False, True], ids=["no-dstate", "dstate"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "seed{}-T{}-B{}-nx{}-nh{}".format(*c))
@pytest.mark.parametrize("cell_name", MODULE_CELLS)
def test_matches_torch_module(backend: str, cell_name: str, case: tuple[int, ...], with_dstate: bool) -> None:
    seed, T, B, n_x, n_h = case
    torch.manual_seed(seed)
    module = MODULES[cell_name](n_x, n_h, dtype=torch.float64)
    name, params = from_torch(module)
    assert name == cell_name
    _compare(backend, cell_name, params, *_inputs(cell_name, seed, T, B, n_x, n_h, with_dstate), module=module)


@pytest.mark.parametrize("with_dstate", [False, True], ids=["no-dstate", "dstate"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "seed{}-T{}-B{}-nx{}-nh{}".format(*c))
@pytest.mark.parametrize("cell_name", ["gru_simple", "gru"])
def test_matches_torch_autograd(backend: str, cell_name: str, case: tuple[int, ...], with_dstate: bool) -> None:
    seed, T, B, n_x, n_h = case
    params = kernels.load(cell_name).init_params(n_x, n_h, seed=seed)
    rng = np.random.default_rng(seed)
    # biases drawn too, so that an ignored bias cannot go unnoticed
    params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in params.items()}
    _compare(backend, cell_name, params, *_inputs(cell_name, seed, T, B, n_x, n_h, with_dstate))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cell_name", MODULE_CELLS)
def test_round_trip_computes_the_same(cell_name: str, dtype: torch.dtype) -> None:
    """module → params → state dict → module: the bias split changes, the function does not."""
    torch.manual_seed(7)
    module = MODULES[cell_name](3, 5, dtype=dtype)
    name, params = from_torch(module)
    assert {v.dtype for v in params.values()} == {np.dtype(str(dtype).removeprefix("torch."))}
    again = MODULES[cell_name](3, 5, dtype=dtype)
    again.load_state_dict(to_state_dict(name, params))
    built = to_torch(name, params)
    xs = torch.randn(4, 2, 3, dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    with torch.no_grad():
        want = module(xs)[0]
        for other in (again, built):
            err = (other(xs)[0] - want).abs().max().item()
            assert err < tol, f"{cell_name} {dtype}: round trip changed outputs by {err:.2e}"
    _, params_again = from_torch(built)
    for k in params:
        np.testing.assert_array_equal(params_again[k], params[k], err_msg=f"{cell_name} {k}")
    # and the params are the cell's, not only something to_torch undoes: the kernel
    # computes what the module computes (swapped gate blocks in both directions fail here)
    ys, _ = kernels.load(name).forward(params, xs.numpy())
    err = float(np.max(np.abs(ys - want.numpy())))
    assert err < tol, f"{cell_name} {dtype}: the kernel on from_torch's params differs from the module by {err:.2e}"


UNSUPPORTED = [
    (torch.nn.LSTM(3, 4, proj_size=2), "proj_size=2"),
    (torch.nn.GRU(3, 4, num_layers=2, dropout=0.25), "dropout=0.25 in training mode"),
    (torch.nn.RNN(3, 4, dtype=torch.float16), "dtype=torch.float16"),
    (torch.nn.GRU(3, 4, device="meta"), "device='meta'"),
    (torch.nn.Linear(3, 4), "Linear"),
]
if "rnn_relu" not in derive.NAMES:
    UNSUPPORTED.append((torch.nn.RNN(3, 4, nonlinearity="relu"), "nonlinearity='relu'"))


@pytest.mark.parametrize("module, unsupported", UNSUPPORTED, ids=[u for _, u in UNSUPPORTED])
def test_from_torch_names_what_is_unsupported(module: torch.nn.Module, unsupported: str) -> None:
    with pytest.raises(ValueError, match=re.escape(unsupported)) as info:
        from_torch(module)
    assert "\n" not in str(info.value) and str(info.value).startswith("module: ")


def test_from_torch_reads_a_pruned_module_s_pruned_weights() -> None:
    torch.manual_seed(1)
    module = torch.nn.LSTM(3, 4, dtype=torch.float64)
    from torch.nn.utils import prune

    prune.l1_unstructured(module, "weight_hh_l0", amount=0.5)
    name, params = from_torch(module)
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    ys, _ = kernels.load(name).forward(params, xs.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(ys, module(xs)[0].numpy(), rtol=0, atol=1e-14)
    assert np.count_nonzero(params["W_i"][:, :4] == 0) > 0  # the mask is applied
    module(xs)[0].sum().backward()
    with pytest.raises(ValueError, match="weight_hh_l0.*pruned.*prune.remove"):
        grads_from_torch(module)


def test_grads_from_torch_says_frozen() -> None:
    module = torch.nn.GRU(3, 4, dtype=torch.float64)
    module.weight_hh_l0.requires_grad_(False)
    module(torch.randn(2, 1, 3, dtype=torch.float64))[0].sum().backward()
    with pytest.raises(ValueError, match=r"module.weight_hh_l0: .*frozen \(requires_grad=False\)"):
        grads_from_torch(module)


def test_grads_from_torch_before_backward() -> None:
    with pytest.raises(ValueError, match=r"module.weight_ih_l0.grad: .*call backward first"):
        grads_from_torch(torch.nn.GRU(3, 4))


def test_to_state_dict_accepts_nested_lists() -> None:
    params = kernels.load("lstm").init_params(3, 4, seed=2)
    from_lists = to_state_dict("lstm", {k: v.tolist() for k, v in params.items()})
    for k, v in to_state_dict("lstm", params).items():
        assert torch.equal(from_lists[k], v), k


def test_to_torch_refuses_cells_without_a_module() -> None:
    params = kernels.load("gru").init_params(3, 4)
    with pytest.raises(ValueError, match="cell_name.*'gru'"):
        to_torch("gru", params)


def test_to_state_dict_checks_params() -> None:
    params = kernels.load("lstm").init_params(3, 4)
    del params["b_o"]
    with pytest.raises(ValueError, match="b_o"):
        to_state_dict("lstm", params)


def test_interop_imports_torch_only_when_called() -> None:
    code = "import sys, derive.interop.torch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
