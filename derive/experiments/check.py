"""A cheap staleness check of the committed results, for ``derive check``.

Rerunning the experiments takes minutes, so ``derive check`` does not; it
compares the SHA-256 of each kernel recorded in a result file with the
kernel file as it is now, and checks that the plots are there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import kernel_file, kernel_path
from .results import EXPERIMENTS, RESULTS_DIR, plot_names, result_path

REPO_RESULTS_DIR = Path(__file__).resolve().parents[2] / RESULTS_DIR
"""The results directory of the checkout this package was imported from."""


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def stale_results(results_dir: Path | None = None, *, kernels_root: Path | None = None) -> list[str]:
    """One line per problem with the committed results, none when all is well.

    A result file is stale when a kernel it was made with (of the backend
    it records) has changed (or gone) since; a missing result file or plot is reported too. The message
    names the command that makes the results again. ``kernels_root`` is a
    checkout whose ``derive/kernels/`` to compare with (default: the
    imported package's).
    """
    directory = results_dir if results_dir is not None else REPO_RESULTS_DIR
    problems: list[str] = []
    for experiment in EXPERIMENTS:
        path = result_path(directory, experiment)
        if not path.is_file():
            problems.append(f"{path}: missing; run `derive experiment {experiment}`")
            continue
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
            hashes = dict(recorded["kernels_sha256"])
            command = str(recorded["command"])
            backend = str(recorded.get("backend", "numpy"))  # results from before backends: NumPy
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"{path}: unreadable result file ({error}); run `derive experiment {experiment}`")
            continue
        def current(cell: str, backend: str = backend) -> Path:
            if kernels_root:
                return kernel_path(kernels_root / "derive" / "kernels", cell, backend)
            return kernel_file(cell, backend)

        changed = sorted(cell for cell, digest in hashes.items() if _sha256(current(cell)) != digest)
        if changed:
            problems.append(
                f"{path}: made with other kernels than the current ones for {', '.join(changed)}; "
                f"rerun `{command}`"
            )
        for name in plot_names(experiment):
            plot = directory / name
            if not plot.is_file():
                problems.append(f"{plot}: missing; rerun `{command}`")
    return problems
