"""Load SciPy's ``scipy.linalg.cython_blas`` without the rest of ``scipy.linalg``.

Numba's BLAS products (``numba_xxgemm``, which the Numba kernels' products
call) take their ``dgemm``/``sgemm`` from the module
``scipy.linalg.cython_blas``, imported by name. Imported the ordinary way it
first imports its package, all of ``scipy.linalg`` (~0.2 s on this project's
machine, 40 % of a cached Numba kernel's import and first call), while the
extension module itself loads in a few milliseconds and needs nothing from
its package.

:func:`load` loads that extension from its file and registers it in
``sys.modules`` under its own name, so that Numba finds it there; a one-shot
import hook then binds it as ``scipy.linalg.cython_blas`` when
``scipy.linalg`` is imported later, as the import system would have. When
``scipy.linalg`` is already imported, or anything is unexpected (another
layout of SciPy, no SciPy), it does nothing: the ordinary import follows.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

NAME = "scipy.linalg.cython_blas"
PACKAGE = "scipy.linalg"


def load() -> bool:
    """Load ``scipy.linalg.cython_blas`` on its own if neither it nor its
    package is imported yet; True when this call loaded it."""
    if NAME in sys.modules or PACKAGE in sys.modules:
        return False
    try:
        import scipy

        folder = Path(scipy.__file__).resolve().parent / "linalg"
        path = next((folder / f"cython_blas{s}" for s in importlib.machinery.EXTENSION_SUFFIXES
                     if (folder / f"cython_blas{s}").is_file()), None)
        if path is None:
            return False
        spec = importlib.util.spec_from_file_location(NAME, path)
        if spec is None or spec.loader is None:
            return False
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - any surprise: the ordinary import, which reports a real error
        return False
    sys.modules[NAME] = module
    sys.meta_path.insert(0, _BindWhenPackageLoads(module))
    return True


class _BindWhenPackageLoads(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``scipy.linalg`` is first imported, removes
    itself, takes the spec the other finders give, and makes its loader set
    the package's attribute ``cython_blas`` to the module already loaded (an
    import of a submodule sets it; a module put in ``sys.modules`` does not)."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != PACKAGE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run, module = loader.exec_module, self.module

        def exec_module(package: ModuleType) -> None:
            run(package)
            if getattr(package, "cython_blas", None) is None:
                package.cython_blas = module

        loader.exec_module = exec_module  # type: ignore[method-assign] - this spec's own loader
        return spec
