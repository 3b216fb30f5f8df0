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
        from .torch import SUPPORTED

        return list(SUPPORTED.values())
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

        return from_torch(source)
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
