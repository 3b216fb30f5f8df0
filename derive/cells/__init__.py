"""The registry of cells: ``derive.cell(name)`` and ``derive.cells()``.

A built-in cell is one module of this package with a ``build() -> Cell``
and an ``ORDER`` (its place in the thread's order, which the site and the
listings follow): adding a cell is adding a file, nothing else. Installed
packages add cells through the entry-point group ``derive.cells`` (each
entry point names a ``build`` function or a module that has one); a cell
file anywhere on disk is read by :func:`derive.load_cell`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata

from ..cell import Cell, CellError

ENTRY_POINT_GROUP = "derive.cells"


@dataclass(frozen=True)
class Origin:
    """Where a registered cell comes from: ``built-in`` or an entry point."""

    name: str
    kind: str  # "built-in" | "entry point"
    where: str  # the module, or "dist: module:attr"
    load: Callable[[], Cell]


@cache
def _registry() -> dict[str, Origin]:
    found: list[tuple[int, str, Origin]] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "build", None)):
            order = getattr(module, "ORDER", 1000)
            found.append((order, info.name, Origin(info.name, "built-in", module.__name__, module.build)))
    registry = {name: origin for _, name, origin in sorted(found)}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in registry:
            continue  # a built-in name is never shadowed
        dist = ep.dist.name if ep.dist is not None else "?"
        registry[ep.name] = Origin(ep.name, "entry point", f"{dist}: {ep.value}", _entry_point_loader(ep))
    return registry


def _entry_point_loader(ep: metadata.EntryPoint) -> Callable[[], Cell]:
    def load() -> Cell:
        target = ep.load()
        build = getattr(target, "build", target)
        built = build()
        if not isinstance(built, Cell):
            raise CellError(f"entry point {ep.value!r} built {type(built).__name__}, not a Cell", source=ep.name)
        return built

    return load


def names() -> tuple[str, ...]:
    """The known cells: built-in ones in the thread's order, then those of
    installed packages."""
    return tuple(_registry())


def origin(name: str) -> Origin:
    """Where cell ``name`` comes from."""
    if name not in _registry():
        raise UnknownCellError(name)
    return _registry()[name]


@cache
def cell(name: str) -> Cell:
    """The cell called ``name`` (one of :func:`names`).

    Raises :class:`UnknownCellError` listing the known cells for an unknown name.
    """
    if not isinstance(name, str) or name not in _registry():
        raise UnknownCellError(name)
    return _registry()[name].load()


def cells() -> list[Cell]:
    """All known cells, in the order of the thread."""
    return [cell(n) for n in names()]


class UnknownCellError(KeyError, ValueError):
    """An unknown cell name; the message lists the known ones."""

    def __init__(self, name: object) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown cell {self.name!r}; known cells: {', '.join(names())} (or a path to a .py or .cell file)"


def __getattr__(attr: str) -> object:
    if attr == "NAMES":  # the known cells, computed when first asked for
        return names()
    raise AttributeError(attr)
