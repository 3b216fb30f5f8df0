"""derive: recurrent cells as symbolic equations, and everything derived from them.

>>> import derive
>>> gru = derive.cell("gru")
>>> [c.name for c in derive.cells()][:5]
['rnn', 'gru_simple', 'gru', 'gru_torch', 'lstm']

A cell of one's own is one file: ``derive.load_cell("mgu.py")`` (a module
with ``build()`` using :class:`CellBuilder`) or ``derive.load_cell("mgu.cell")``
(equations as text).
"""

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


def __getattr__(attr: str) -> object:
    if attr == "NAMES":  # the registered cells, in the thread's order
        return names()
    raise AttributeError(attr)
