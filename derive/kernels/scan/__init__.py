"""The generated parallel-scan kernels: one committed module per built-in
cell whose recurrence is a linear scan, c(t) = a(t) ⊙ c(t−1) + b(t) with a
and b functions of x(t) alone (:mod:`derive.structure`), written by
``derive build`` beside the step-loop kernel (:mod:`derive.render.scan_kernel`).

>>> from derive.kernels import scan
>>> fast = scan.load("min_gru")  # forward/backward with the loop kernel's contract

A cell of one's own gets its scan kernel with :func:`compile`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...cell import Cell
from ...cells import UnknownCellError, cell, names, origin
from ...render import scan_kernel
from ...render.scan_kernel import NotAScanCell


def has_scan(name: str) -> bool:
    """Whether cell ``name`` has a parallel-scan kernel."""
    return scan_kernel.scannable(cell(name)) is None


def compile(c: Cell) -> ModuleType:  # noqa: A001 - the verb users look for
    """``c``'s scan kernel as a module in memory; :class:`NotAScanCell` if it has none."""
    return scan_kernel.compile(c)


def load(name: str | Cell) -> ModuleType:
    """The scan kernel of cell ``name``: the committed module of a built-in
    cell, or one compiled now for any other. Raises :class:`NotAScanCell`
    (naming why) for a cell whose recurrence is not a linear scan."""
    if isinstance(name, Cell):
        return compile(name)
    if name not in names():
        raise UnknownCellError(name)
    why = scan_kernel.scannable(cell(name))
    if why is not None:
        raise NotAScanCell(f"cell {name!r} has no parallel-scan kernel: {why}")
    if origin(name).kind == "built-in":
        return importlib.import_module(f"{__name__}.{name}")
    return compile(cell(name))


__all__ = ["NotAScanCell", "compile", "has_scan", "load"]
