"""A recurrent layer from one framework to another, through derive's params.

Each conversion reads the source into a cell name and params (``from_torch``,
``from_keras``, ``from_onnx``), then writes them with the target's ``to_…``.
The cell name is the check: a target that cannot compute that cell (a
``torch.nn.GRU`` for the thread's ``gru``, which resets before the recurrent
product) refuses in one line that says why, instead of approximating.

>>> import torch
>>> from derive.interop.convert import convert
>>> layer = convert(torch.nn.GRU(3, 4), "keras")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

TARGETS = ("torch", "keras", "onnx")
"""The frameworks :func:`convert` writes."""


def targets_of(cell_name: str) -> list[str]:
    """The frameworks with a layer computing ``cell_name`` exactly."""
    return [t for t in TARGETS if cell_name in _cells(t)]


def _cells(target: str) -> list[str]:
    """The cells ``target``'s standard layers compute."""
    if target == "torch":
        from .torch import MODULES

        return [name for name in MODULES if _known(name)]
    if target == "keras":
        from .keras import LAYOUTS
    else:
        from .onnx import LAYOUTS
    return [layout.cell for layout in LAYOUTS]


def read(source: Any) -> tuple[str, dict[str, np.ndarray]]:
    """The cell name and params of a torch module, a Keras layer, an ONNX
    model (or ``.onnx`` file), or a ``(cell_name, params)`` pair."""
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str):
        return source[0], dict(source[1])
    if isinstance(source, (str, os.PathLike)):
        from .onnx import from_onnx

        return from_onnx(source)
    module = type(source).__module__
    if module.startswith("torch"):
        from .torch import from_torch

        name, params = from_torch(source)
        if not isinstance(params, dict):  # a stack of layers or directions: no single layer to write
            raise ValueError(f"source: expected a single-layer, unidirectional, time-major torch module with "
                             f"biases (one params dict), got {type(source).__name__} with several layers, "
                             "directions, batch_first or bias=False")
        return name, params
    if module.startswith("keras"):
        from .keras import from_keras

        return from_keras(source)
    if module.startswith("onnx"):
        from .onnx import from_onnx

        return from_onnx(source)
    raise ValueError(f"source: expected a torch module, a Keras layer, an ONNX model or (cell_name, params), "
                     f"got {type(source).__name__}")


def convert(source: Any, to: str) -> Any:
    """``source`` (see :func:`read`) as a layer of framework ``to``: a new
    ``torch.nn`` module, a built Keras layer or a checked ONNX model, computing
    the same function. A ValueError in one line if ``to`` has no layer for
    the source's cell, naming the cell, what it computes and what ``to`` has."""
    if to not in TARGETS:
        raise ValueError(f"to: expected one of {list(TARGETS)}, got {to!r}")
    name, params = read(source)
    cells = _cells(to)
    if name not in cells:
        from .. import cell

        c = cell(name)
        has = ", ".join(f"{n} ({cell(n).title})" for n in dict.fromkeys(cells))
        elsewhere = [t for t in targets_of(name) if t != to]
        hint = f"; it converts to {' and '.join(elsewhere)}" if elsewhere else ""
        raise ValueError(f"cannot convert {name} ({c.summary.rstrip('.')}) to {to}: its layers compute only "
                         f"{has}, so no exact conversion exists and none is approximated{hint}")
    if to == "torch":
        from .torch import to_torch

        return to_torch(name, params)
    if to == "keras":
        from .keras import to_keras

        return to_keras(name, params)
    from .onnx import to_onnx

    return to_onnx(name, params)


def torch_to_keras(module: Any) -> Any:
    """A ``torch.nn.RNN``/``GRU``/``LSTM`` as the Keras layer computing the same."""
    return convert(module, "keras")


def keras_to_torch(layer: Any) -> Any:
    """A Keras ``SimpleRNN``/``GRU``/``LSTM`` as the torch module computing the
    same; ``GRU(reset_after=False)`` is refused (torch has no such GRU)."""
    return convert(layer, "torch")


def torch_to_onnx(module: Any) -> Any:
    """A ``torch.nn.RNN``/``GRU``/``LSTM`` as an ONNX model of the standard operator."""
    return convert(module, "onnx")


# -- the conversion table of the site (docs/interop.md: {{ derive: conversions }}) -------------------

TORCH_GATE_NAMES = {"RNN": ("h",), "GRU": ("r", "z", "n"), "LSTM": ("i", "f", "g", "o")}
"""torch's names of its gate blocks, in its order (its documentation's r, z, n and i, f, g, o)."""

WEIGHTS = {
    "torch": ("weight_ih_l0", "(k·n_h, n_x)", "weight_hh_l0", "(k·n_h, n_h)", "rows", "[weight_hh_g, weight_ih_g]"),
    "Keras": ("kernel", "(n_x, k·n_h)", "recurrent_kernel", "(n_h, k·n_h)", "columns", "[recurrent_kernel_gᵀ, kernel_gᵀ]"),
    "ONNX": ("W", "(1, k·n_h, n_x)", "R", "(1, k·n_h, n_h)", "rows", "[R_g, W_g]"),
}
"""Each framework's weight tensors on x and on the state, their shapes (k gates),
the axis that stacks the gates, and derive's W_g on [state, x] made of their block g."""


def layouts() -> list[Any]:
    """Every layout of every framework (torch's built from :data:`derive.interop.torch.MODULES`
    and ``GATES``)."""
    from .keras import LAYOUTS as KERAS
    from .layouts import Block, Layout
    from .onnx import LAYOUTS as ONNX
    from .torch import GATES, MODULES

    torch_layouts = []
    for cell_name, (layer, options) in MODULES.items():
        blocks = tuple(Block(theirs, gate) for theirs, gate in zip(TORCH_GATE_NAMES[layer], GATES[cell_name], strict=True))
        setting = ", ".join(f"{k}={v!r}" for k, v in options.items())
        torch_layouts.append(Layout("torch", f"nn.{layer}", setting, cell_name, blocks, "", ""))
    return [layout for layout in (*torch_layouts, *KERAS, *ONNX) if _known(layout.cell)]


def _known(cell_name: str) -> bool:
    """Whether this version of derive has the cell (a layout may name one it lacks)."""
    from ..cells import names

    return cell_name in names()


def _bias_pieces(layout: Any) -> tuple[str, ...]:
    if layout.framework == "torch":
        return ("bias_ih", "bias_hh")
    if layout.framework == "ONNX":
        return ("Wb", "Rb")
    return ("bias[0]", "bias[1]") if layout.split_candidate else ("bias",)


def table_rows(kind: str, lang: str = "en") -> list[str]:
    """A conversion table as Markdown lines. ``kind`` ``"weights"``: each
    framework's weight tensors and how derive's W_g is made of them;
    ``"layers"``: for each framework's layer, the derive cell it computes,
    its gate blocks in its order with the derive params each fills, and the
    biases' split."""
    en = lang != "fr"
    if kind == "weights":
        rows = ["| Framework | On x | On the state | Gates stacked in | derive's W_g |" if en else
                "| Bibliothèque | Sur x | Sur l’état | Portes empilées en | W_g de derive |", "|---|---|---|---|---|"]
        axis = {"rows": "rows" if en else "lignes", "columns": "columns" if en else "colonnes"}
        for framework, (wx, sx, wh, sh, stacked, formula) in WEIGHTS.items():
            rows.append(f"| {framework} | `{wx} {sx}` | `{wh} {sh}` | {axis[stacked]} | `W_g = {formula}` |")
        return rows
    if kind != "layers":
        raise ValueError(f"kind: expected 'weights' or 'layers', got {kind!r}")
    rows = ["| Layer | derive cell | Gate blocks, in the layer's order | Biases |" if en else
            "| Couche | Cellule derive | Blocs de portes, dans l’ordre de la couche | Biais |", "|---|---|---|---|"]
    for layout in layouts():
        blocks, biases = [], []
        pieces = _bias_pieces(layout)
        for block in layout.blocks:
            minus = "−" if block.sign < 0 else ""
            if block.gate is None:
                blocks.append(f"`{block.theirs}` → `W_hx`, `W_hc`")
                biases.append(f"`b_hx = {pieces[0]}_{block.theirs}`, `b_hc = {pieces[1]}_{block.theirs}`")
                continue
            blocks.append(f"`{block.theirs}` → `{minus}W_{block.gate}`")
            total = " + ".join(f"{p}_{block.theirs}" for p in pieces)
            biases.append(f"`b_{block.gate} = {minus}({total})`" if minus and len(pieces) > 1
                          else f"`b_{block.gate} = {minus}{total}`")
        layer = f"{layout.framework} `{layout.layer}`" + (f" `{layout.setting}`" if layout.setting else "")
        rows.append(f"| {layer} | `{layout.cell}` | {', '.join(blocks)} | {', '.join(biases)} |")
    return rows
