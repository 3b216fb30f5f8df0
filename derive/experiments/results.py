"""Result files: JSON with the numbers and what made them."""

from __future__ import annotations

import importlib
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from . import kernel_sha256

RESULTS_DIR = Path("docs/assets/generated/experiments")
"""Where the committed results and plots live, from the repository root."""

EXPERIMENTS: tuple[str, ...] = ("gradient-flow", "memory", "gates", "forget-bias")
"""The experiments, by the names of their command and files."""

LANGUAGES: tuple[str, ...] = ("en", "fr")
"""The languages every plot is drawn in."""

SCHEME_SUFFIXES: dict[str, str] = {"light": "", "dark": ".dark"}
"""The colour schemes every plot is drawn in, and the suffix of their files."""


def plot_names(experiment: str) -> list[str]:
    """The plot files of ``experiment``: ``NAME.LANG.svg`` (light) and
    ``NAME.LANG.dark.svg`` for every language."""
    return [f"{experiment}.{lang}{suffix}.svg" for lang in LANGUAGES for suffix in SCHEME_SUFFIXES.values()]


def provenance(command: str, cells: Sequence[str], seeds: Sequence[int], backend: str = "numpy") -> dict[str, Any]:
    """The header of a result file: the command, the versions, the backend
    whose kernels produced the numbers and the SHA-256 of each.

    No date and no timing, so that the same command gives the same file.
    """
    versions = {"numpy": np.__version__}
    if backend != "numpy":
        module = importlib.import_module(backend)
        versions[backend] = str(getattr(module, "__version__", "unknown"))
    return {
        "command": command,
        "derive_version": __version__,
        **versions,
        "python": platform.python_version(),
        "backend": backend,
        "kernels_sha256": {cell: kernel_sha256(cell, backend) for cell in cells},
        "seeds": list(seeds),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as readable, stable JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """Read a result file."""
    return json.loads(path.read_text(encoding="utf-8"))


def result_path(out: Path, experiment: str) -> Path:
    """The JSON file of ``experiment`` in ``out``."""
    return out / f"{experiment}.json"
