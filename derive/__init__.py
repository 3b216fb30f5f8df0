"""derive: recurrent cells as symbolic equations, and everything derived from them.

>>> import derive
>>> gru = derive.cell("gru")
>>> [c.name for c in derive.cells()][:5]
['rnn', 'gru_simple', 'gru', 'gru_torch', 'lstm']

A cell of one's own is one file: ``derive.load_cell("mgu.py")`` (a module
with ``build()`` using :class:`CellBuilder`) or ``derive.load_cell("mgu.cell")``
(equations as text).

The names below are imported when first used: ``import derive.kernels``
and a committed kernel load without SymPy (about 0.3 s of a process's
start), which only the symbolic side needs.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cell import Cell, CellBuilder, CellError
    from .cells import UnknownCellError, cell, cells, names
    from .load import load_cell, resolve

__version__ = "0.1.0"
__all__ = [
    "NAMES",
    "Cell",
    "CellBuilder",
    "CellError",
    "UnknownCellError",
    "__version__",
    "cell",
    "cells",
    "load_cell",
    "names",
    "resolve",
]

_FROM = {
    "Cell": "cell", "CellBuilder": "cell", "CellError": "cell",
    "UnknownCellError": "cells", "cell": "cells", "cells": "cells", "names": "cells",
    "load_cell": "load", "resolve": "load",
}
"""Each public name and the submodule it comes from."""


def __getattr__(attr: str) -> object:
    if attr == "NAMES":  # the registered cells, in the thread's order
        return __getattr__("names")()
    if attr in _FROM:
        value = getattr(importlib.import_module(f"{__name__}.{_FROM[attr]}"), attr)
        globals()[attr] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(ModuleType):
    """The package, whose ``derive.cell`` and ``derive.cells`` are functions.

    Importing the submodule ``derive.cell`` binds it as the package's
    attribute ``cell`` (``derive.cells`` likewise); the functions of the
    same names hid them when the package imported everything at once, and
    still do: the submodules stay in ``sys.modules``, where ``from
    derive.cell import Cell`` finds them."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _FROM and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
