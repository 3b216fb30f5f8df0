"""Experiments that put numbers on the thread's central claim.

Four experiments run the generated NumPy kernels (``derive/kernels/<cell>.py``)
and nothing else for the recurrence, forward and backward:

* :mod:`.gradient_flow` — how fast the gradient reaching the state k steps
  back shrinks, ‖∂L/∂c(t−k)‖ / ‖∂L/∂c(t)‖, at initialisation and after
  training;
* :mod:`.memory` — the adding problem (:mod:`.tasks`) learnt with a small
  NumPy Adam (:mod:`.optim`, :mod:`.train`) at sequence lengths up to 200,
  test error against the trivial baseline;
* :mod:`.gates` — what the keep gate (1 − G_u, G_z, G_f: read off each
  cell's equations) of the trained models does over a sequence;
* :mod:`.forget_bias` — the keep gate's bias at initialisation (the LSTM's
  forget-gate bias) and whether it lets a cell learn at T = 200.

``derive experiment gradient-flow|memory|gates|forget-bias|all``
(:mod:`.cli`) runs them and writes JSON results and SVG plots
(:mod:`.plots`) that the site shows without rerunning anything;
``derive experiment plots`` redraws the plots from the JSON; :func:`.check.stale_results` tells when the committed
results were made with kernels that have changed since.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ..cells import names

def _default_cells() -> tuple[str, ...]:
    """The cells of the committed results (a cell joins the experiments
    when its results are committed: ``derive experiment all --cells …``),
    in the registry's order; every registered cell where no result is."""
    committed = Path(__file__).resolve().parents[2] / "docs" / "assets" / "generated" / "experiments" / "gradient-flow.json"
    try:
        measured = set(json.loads(committed.read_text(encoding="utf-8"))["data"]["cells"])
    except (OSError, ValueError, KeyError, TypeError):
        return names()
    return tuple(n for n in names() if n in measured)


CELLS: tuple[str, ...] = _default_cells()
"""The cells the experiments run by default, in the order of the thread."""


def kernel_states(cell: str) -> tuple[str, ...]:
    """Every state of ``cell``, by the names its generated kernel uses."""
    return tuple(load_kernel(cell).STATES)


def state_measured(cell: str) -> str:
    """The state whose gradient :mod:`.gradient_flow` follows: the one a
    gate carries straight on (the memory cell c of the GRUs and the LSTM,
    see :func:`.gates.keep_gate`), else the cell's memory (its only state,
    a for the plain RNN; the state that is not its output otherwise)."""
    import derive

    from .gates import keep_gate

    gate = keep_gate(cell)
    if gate is not None:
        return gate.state
    memory = derive.cell(cell).memory
    states = kernel_states(cell)
    if memory not in states:
        raise ValueError(f"cell: {cell!r} follows the state {memory!r}, which its kernel does not have "
                         f"(states: {states})")
    return memory


class _ByCell(Mapping[str, Any]):
    """A read-only mapping from cell name to ``function(cell)``, computed
    when asked: what differs between cells is read off the cells."""

    def __init__(self, function: Callable[[str], Any]) -> None:
        self._function = function

    def __getitem__(self, cell: str) -> Any:
        if cell not in names():  # any registered cell; iteration gives the default ones
            raise KeyError(cell)
        return self._function(cell)

    def __iter__(self) -> Iterator[str]:
        return iter(CELLS)

    def __len__(self) -> int:
        return len(CELLS)


STATE_MEASURED: Mapping[str, str] = _ByCell(state_measured)
"""The state followed by :mod:`.gradient_flow`, per cell (:func:`state_measured`)."""

KERNEL_STATES: Mapping[str, tuple[str, ...]] = _ByCell(kernel_states)
"""Every state of each cell, by the names the kernels use (:func:`kernel_states`)."""

KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"
"""Where the committed generated kernels live."""


def default_backend() -> str:
    """The kernels the experiments run on unless told: ``"numba"`` when
    Numba is installed (the ``fast`` extra: the same equations, compiled,
    several times faster at the experiments' small shapes), else ``"numpy"``.
    Either gives the same results within float tolerance."""
    return "numba" if importlib.util.find_spec("numba") is not None else "numpy"


def load_kernel(cell: str, backend: str = "numpy") -> ModuleType:
    """The generated kernel module of ``cell`` for ``backend`` (``derive.kernels.load``)."""
    kernels = importlib.import_module("derive.kernels")
    return kernels.load(cell, backend=backend)


def kernel_file(cell: str, backend: str = "numpy") -> Path:
    """The source file of the generated kernel of ``cell`` for ``backend``
    (``derive/kernels/<cell>.py``, ``derive/kernels/numba/<cell>.py``)."""
    kernels = importlib.import_module("derive.kernels")
    package_file = getattr(kernels, "__file__", None)
    base = Path(package_file).resolve().parent if package_file else KERNELS_DIR
    return kernel_path(base, cell, backend)


def kernel_path(kernels_dir: Path, cell: str, backend: str) -> Path:
    """Where the kernel of ``cell`` for ``backend`` lives under a ``derive/kernels`` directory."""
    return kernels_dir / f"{cell}.py" if backend == "numpy" else kernels_dir / backend / f"{cell}.py"


def kernel_sha256(cell: str, backend: str = "numpy") -> str:
    """The SHA-256 of the kernel source of ``cell`` for ``backend``, recorded with results."""
    return hashlib.sha256(kernel_file(cell, backend).read_bytes()).hexdigest()


def round_sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits.

    Results are stored at this precision: enough for every figure quoted,
    and stable against last-bit differences between BLAS builds.
    """
    return float(f"{value:.{digits}g}")
