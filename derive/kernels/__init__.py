"""The generated NumPy kernels, one module per cell (``derive build`` writes them).

>>> from derive import kernels
>>> gru = kernels.load("gru")
>>> params = gru.init_params(n_x=3, n_h=4)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..cells import NAMES, UnknownCellError


def load(name: str) -> ModuleType:
    """The kernel module of cell ``name`` (``derive.kernels.<name>``)."""
    if name not in NAMES:
        raise UnknownCellError(name)
    return importlib.import_module(f"{__name__}.{name}")
