"""The registry of cells: ``derive.cell(name)`` and ``derive.cells()``."""

from __future__ import annotations

from functools import cache

from ..cell import Cell
from . import gru, gru_simple, gru_torch, lstm, rnn

_BUILDERS = {
    "rnn": rnn.build,
    "gru_simple": gru_simple.build,
    "gru": gru.build,
    "gru_torch": gru_torch.build,
    "lstm": lstm.build,
}

NAMES: tuple[str, ...] = tuple(_BUILDERS)
"""The known cells, in the order the site explains them."""


@cache
def cell(name: str) -> Cell:
    """The cell called ``name`` (one of :data:`NAMES`).

    Raises ``KeyError`` listing the known cells for an unknown name.
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise UnknownCellError(name)
    return _BUILDERS[name]()


def cells() -> list[Cell]:
    """All known cells, in the order of the thread."""
    return [cell(n) for n in NAMES]


class UnknownCellError(KeyError, ValueError):
    """An unknown cell name; the message lists the known ones."""

    def __init__(self, name: object) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown cell {self.name!r}; known cells: {', '.join(NAMES)}"
