"""Cells from files outside the package: ``derive.load_cell(path)``.

A cell file is either Python — a module with a ``build() -> Cell`` made with
:class:`derive.CellBuilder` — or text (``.cell``), one equation a line in the
thread's notation (:mod:`derive.cellfile`). Every command and function that
takes a cell name also takes such a file (:func:`resolve`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

from .cell import Cell, CellError, default_source
from .cells import cell as registered_cell

SUFFIXES = (".py", ".cell")


def looks_like_file(spec: str) -> bool:
    """Whether ``spec`` names a file rather than a registered cell."""
    return spec.endswith(SUFFIXES) or os.sep in spec or "/" in spec


def resolve(spec: str | Cell) -> Cell:
    """A cell from a registered name (``"gru"``) or a file path (``"mgu.py"``, ``"mgu.cell"``)."""
    if isinstance(spec, Cell):
        return spec
    return load_cell(spec) if looks_like_file(spec) else registered_cell(spec)


def load_cell(path: str | os.PathLike[str]) -> Cell:
    """The cell defined in file ``path`` (``.py`` with ``build()``, or ``.cell``).

    Any problem — a missing file, a syntax error, a ``build`` that returns
    something else, a mistake in the cell — raises one :class:`CellError`
    naming the file.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise CellError("no such file", source=source)
    if path.suffix == ".cell":
        from .cellfile import read_cell_file

        return read_cell_file(path)
    if path.suffix != ".py":
        raise CellError(f"expected a .py or .cell file, got {path.suffix or 'no suffix'!r}", source=source)
    name = "derive_user_cell_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CellError("cannot be imported", source=source)
    module = importlib.util.module_from_spec(spec)
    with _building_from(source):
        try:
            spec.loader.exec_module(module)
        except CellError:
            raise
        except SyntaxError as e:
            raise CellError(f"syntax error: {e.msg}", source=source, line=e.lineno, column=e.offset) from None
        except Exception as e:  # noqa: BLE001 - a user's module: any failure is reported in one line
            raise CellError(f"importing it raised {type(e).__name__}: {e}", source=source) from None
        build = getattr(module, "build", None)
        if not callable(build):
            raise CellError("defines no build() function returning a Cell", source=source)
        try:
            built = build()
        except CellError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CellError(f"build() raised {type(e).__name__}: {e}", source=source) from None
    if not isinstance(built, Cell):
        raise CellError(f"build() returned {type(built).__name__}, not a Cell", source=source)
    if built.source == default_source(built.name):  # built without naming its file
        built = dataclasses.replace(built, source=source)
    return built


@contextlib.contextmanager
def _building_from(source: str) -> Iterator[None]:
    """While a user's file runs, a ``CellBuilder`` names that file by default."""
    cell_module = importlib.import_module("derive.cell")  # the module (``derive.cell`` is also a function)

    previous = cell_module.current_source
    cell_module.current_source = source
    try:
        yield
    finally:
        cell_module.current_source = previous
