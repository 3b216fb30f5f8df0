"""The generated kernels: one committed module per built-in cell and
backend (``derive build`` writes them), and the same generators for any cell.

>>> from derive import kernels
>>> gru = kernels.load("gru")
>>> params = gru.init_params(n_x=3, n_h=4)

Two backends print the same kernel plan (:mod:`derive.render.plan`):
``"numpy"`` (``derive/kernels/<cell>.py``, the readable reference, NumPy
only) and ``"numba"`` (``derive/kernels/numba/<cell>.py``: the step loops
compiled with Numba, the optional extra ``pip install -e ".[fast]"``).
Both have the same contract: ``kernels.load("gru", backend="numba")`` is a
drop-in replacement.

A cell of one's own (:func:`derive.load_cell`) gets its kernel as source
(:func:`generate`), as a module (:func:`compile`), or as a file
(``derive build --cell FILE --out DIR [--backend numba]``).
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cell import Cell

BACKENDS = ("numpy", "numba")
"""The kernel backends, the reference first."""

INSTALL_FAST = 'pip install -e ".[fast]"'


class BackendUnavailableError(ImportError):
    """A backend whose package is not installed (Numba without the ``fast`` extra)."""


def check_backend(backend: object) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else a ``ValueError``
    naming the known ones; a :class:`BackendUnavailableError` saying how to
    install Numba when ``backend`` is ``"numba"`` and Numba is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "numba" and importlib.util.find_spec("numba") is None:
        raise BackendUnavailableError(f"the numba backend needs Numba, which is not installed: {INSTALL_FAST}")
    return str(backend)


def generate(cell: Cell, command: str | None = None, backend: str = "numpy") -> str:
    """The source of ``cell``'s kernel module for ``backend``; its header
    names ``command`` as the way to regenerate it (``derive build`` by
    default). Generating needs no Numba, only running the module does."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "numba":
        from ..render.numba_kernel import generate as numba_kernel

        return numba_kernel(cell, command)
    from ..render.numpy_kernel import generate as numpy_kernel

    return numpy_kernel(cell, command)


def compile(cell: Cell, backend: str = "numpy") -> ModuleType:  # noqa: A001 - the verb users look for
    """``cell``'s kernel as an importable module object: ``init_params``,
    ``forward``, ``backward``. The NumPy kernel is built in memory; the
    Numba one is written once to a file named after its content under the
    temporary directory (Numba caches compiled code beside a file only), so
    a later process reuses the compiled code."""
    backend = check_backend(backend)
    source = generate(cell, backend=backend)
    if backend == "numba":
        return _numba_module(cell, source)
    module = ModuleType(f"derive_kernel_{cell.name}", f"Generated kernel of {cell.title}.")
    module.__file__ = f"<derive kernel of {cell.source}>"
    builtins.exec(builtins.compile(source, module.__file__, "exec"), module.__dict__)  # our generated code, not user text
    return module


def _numba_module(cell: Cell, source: str) -> ModuleType:
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    name = f"derive_numba_kernel_{cell.name}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    directory = Path(tempfile.gettempdir()) / "derive-numba-kernels"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.is_file() or path.read_bytes() != source.encode("utf-8"):
        partial = path.with_suffix(f".{id(source)}.tmp")
        partial.write_bytes(source.encode("utf-8"))
        partial.replace(path)  # atomic: another process may import it meanwhile
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Numba's cache finds the module of a compiled function by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load(name: str | Cell, backend: str = "numpy") -> ModuleType:
    """The kernel of cell ``name`` for ``backend`` (``"numpy"`` or
    ``"numba"``): the committed module of a built-in cell
    (``derive.kernels.<name>``, ``derive.kernels.numba.<name>``), or one
    compiled now for any other cell."""
    backend = check_backend(backend)
    package = __name__ if backend == "numpy" else f"{__name__}.numba"
    if isinstance(name, str):
        committed = _committed(package, name)
        if committed is not None:
            return committed
    # the registry and the cells import SymPy: only for a cell without a committed kernel
    from ..cell import Cell
    from ..cells import UnknownCellError, cell, names

    if isinstance(name, Cell):
        if name.name in names() and name.source.startswith("derive/cells/"):
            return importlib.import_module(f"{package}.{name.name}")
        return compile(name, backend)
    if name not in names():
        raise UnknownCellError(name)
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as e:  # a cell registered by another package: no committed kernel
        if e.name != f"{package}.{name}":
            raise
        return compile(cell(name), backend)


def _committed(package: str, name: str) -> ModuleType | None:
    """The committed kernel of the built-in cell ``name`` in ``package``, or
    None when there is none. Found by its file, without the cells' registry:
    ``derive build`` writes a kernel there for built-in cells only, and the
    module's ``CELL`` says which cell it is (``scan`` and ``numba`` are not)."""
    if not name.isidentifier() or name.startswith("_"):
        return None
    folder = Path(__file__).parent.joinpath(*package.split(".")[2:])
    if not (folder / f"{name}.py").is_file():
        return None
    module = importlib.import_module(f"{package}.{name}")
    return module if getattr(module, "CELL", None) == name else None
