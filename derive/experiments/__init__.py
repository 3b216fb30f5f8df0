"""Experiments that put numbers on the thread's central claim.

Two experiments run the generated NumPy kernels (``derive/kernels/<cell>.py``)
and nothing else for the recurrence, forward and backward:

* :mod:`.gradient_flow` — how fast the gradient reaching the state k steps
  back shrinks, ‖∂L/∂c(t−k)‖ / ‖∂L/∂c(t)‖, at initialisation and after
  training;
* :mod:`.train` — the adding problem (:mod:`.tasks`) learnt with a small
  NumPy Adam (:mod:`.optim`) at sequence lengths up to 200, test error
  against the trivial baseline.

``derive experiment gradient-flow|memory`` (:mod:`.cli`) runs them and writes
JSON results and SVG plots (:mod:`.plots`) that the site shows without
rerunning anything; :func:`.check.stale_results` tells when the committed
results were made with kernels that have changed since.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from types import ModuleType

from ..cells import NAMES

STATE_MEASURED: dict[str, str] = {
    "rnn": "a",
    "gru_simple": "c",
    "gru": "c",
    "gru_torch": "c",
    "lstm": "c",
}
"""The state whose gradient :mod:`.gradient_flow` follows: the memory cell c,
or a for the plain RNN (its only state). For the LSTM that is c, not a."""

CELLS: tuple[str, ...] = tuple(n for n in NAMES if n in STATE_MEASURED)
"""The cells the experiments run, in the order of the thread: those the
committed results were made with (a new cell joins with its results)."""

KERNEL_STATES: dict[str, tuple[str, ...]] = {
    "rnn": ("a",),
    "gru_simple": ("c",),
    "gru": ("c",),
    "gru_torch": ("c",),
    "lstm": ("a", "c"),
}
"""Every state of each cell, by the names the kernels use (contract)."""

KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"
"""Where the committed generated kernels live."""


def load_kernel(cell: str) -> ModuleType:
    """The generated kernel module of ``cell`` (``derive.kernels.load``)."""
    kernels = importlib.import_module("derive.kernels")
    return kernels.load(cell)


def kernel_file(cell: str) -> Path:
    """The source file of the generated kernel of ``cell``."""
    kernels = importlib.import_module("derive.kernels")
    package_file = getattr(kernels, "__file__", None)
    base = Path(package_file).resolve().parent if package_file else KERNELS_DIR
    return base / f"{cell}.py"


def kernel_sha256(cell: str) -> str:
    """The SHA-256 of the kernel source of ``cell``, recorded with results."""
    return hashlib.sha256(kernel_file(cell).read_bytes()).hexdigest()


def round_sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits.

    Results are stored at this precision: enough for every figure quoted,
    and stable against last-bit differences between BLAS builds.
    """
    return float(f"{value:.{digits}g}")
