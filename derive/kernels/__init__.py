"""The generated NumPy kernels: one committed module per built-in cell
(``derive build`` writes them), and the same generator for any cell.

>>> from derive import kernels
>>> gru = kernels.load("gru")
>>> params = gru.init_params(n_x=3, n_h=4)

A cell of one's own (:func:`derive.load_cell`) gets its kernel as source
(:func:`generate`), as a module in memory (:func:`compile`), or as a file
(``derive build --cell FILE --out DIR``).
"""

from __future__ import annotations

import builtins
import importlib
from types import ModuleType

from ..cell import Cell
from ..cells import UnknownCellError, names


def generate(cell: Cell, command: str | None = None) -> str:
    """The source of ``cell``'s NumPy kernel module; its header names
    ``command`` as the way to regenerate it (``derive build`` by default)."""
    from ..render.numpy_kernel import generate as numpy_kernel

    return numpy_kernel(cell, command)


def compile(cell: Cell) -> ModuleType:  # noqa: A001 - the verb users look for
    """``cell``'s kernel as an importable module object, built in memory
    (nothing written to disk): ``init_params``, ``forward``, ``backward``."""
    source = generate(cell)
    module = ModuleType(f"derive_kernel_{cell.name}", f"Generated kernel of {cell.title}.")
    module.__file__ = f"<derive kernel of {cell.source}>"
    builtins.exec(builtins.compile(source, module.__file__, "exec"), module.__dict__)  # our generated code, not user text
    return module


def load(name: str | Cell) -> ModuleType:
    """The kernel of cell ``name``: the committed module of a built-in cell
    (``derive.kernels.<name>``), or one compiled now for any other cell."""
    if isinstance(name, Cell):
        if name.name in names() and name.source.startswith("derive/cells/"):
            return importlib.import_module(f"{__name__}.{name.name}")
        return compile(name)
    if name not in names():
        raise UnknownCellError(name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:  # a cell registered by another package: no committed kernel
        from ..cells import cell

        return compile(cell(name))
