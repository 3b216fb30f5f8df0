"""derive: recurrent cells as symbolic equations, and everything derived from them.

>>> import derive
>>> gru = derive.cell("gru")
>>> [c.name for c in derive.cells()]
['rnn', 'gru_simple', 'gru', 'gru_torch', 'lstm']
"""

from .cell import Cell
from .cells import NAMES, UnknownCellError, cell, cells

__version__ = "0.1.0"
__all__ = ["Cell", "NAMES", "UnknownCellError", "cell", "cells", "__version__"]
