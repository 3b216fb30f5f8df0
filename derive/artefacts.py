"""Every generated file, and the two commands that keep them in sync.

``derive build`` writes them; ``derive check`` compares the committed files
with what the equations give now and names each stale one. Generation is
deterministic, so a fresh checkout is up to date byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import notebooks
from .cells import cell, names, origin
from .render import numba_kernel, scan_kernel
from .render.numpy_kernel import generate

PACKAGE = Path(__file__).resolve().parent


def default_root() -> Path:
    """The project checkout this package lives in."""
    return PACKAGE.parent


def artefacts(root: str | Path | None = None) -> dict[str, Callable[[], str]]:
    """Relative path → a function giving the file's current content: the
    kernels, and the notebooks of the pages of ``root``/docs that ask for
    one (none where ``root`` has no docs)."""
    root = Path(root) if root is not None else default_root()
    built_in = [n for n in names() if origin(n).kind == "built-in"]  # an installed package's cells are not ours to write
    files = {f"derive/kernels/{name}.py": (lambda name=name: generate(cell(name))) for name in built_in}
    # beside the step loop, a parallel-scan kernel for every cell whose recurrence is a linear scan
    files.update({f"derive/kernels/scan/{name}.py": (lambda name=name: scan_kernel.generate(cell(name)))
                  for name in built_in if scan_kernel.scannable(cell(name)) is None})
    # the same plan printed for Numba (generating needs no Numba, only running the modules does)
    files.update({f"derive/kernels/numba/{name}.py": (lambda name=name: numba_kernel.generate(cell(name)))
                  for name in built_in})
    files.update(notebooks.artefacts(root / "docs"))
    return files


def build(root: str | Path | None = None) -> list[Path]:
    """Write every generated file under ``root`` whose bytes differ from what
    the equations give (a CRLF copy differs); return the paths written, none
    when everything was up to date. ``OSError`` if a file cannot be written."""
    root = Path(root) if root is not None else default_root()
    written = []
    for rel, make in artefacts(root).items():
        path = root / rel
        content = make().encode("utf-8")
        if not path.is_file() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            written.append(path)
    return written


def check(root: str | Path | None = None) -> list[str]:
    """One line per generated file that is missing or differs from what the
    equations (for a kernel) or its page (for a notebook) give now, and per committed experiment result made with other
    kernels than the current ones (a cheap hash comparison: the experiments
    themselves take minutes); empty when everything is up to date."""
    root = Path(root) if root is not None else default_root()
    problems = []
    for rel, make in artefacts(root).items():
        path = root / rel
        if not path.exists():
            problems.append(f"missing: {rel}")
        elif path.read_bytes() != make().encode("utf-8"):  # bytes: line endings count, as for the result hashes
            problems.append(f"stale: {rel}")
    results = root / "docs" / "assets" / "generated" / "experiments"
    if results.is_dir():  # a checkout with the site's results (not an empty --root)
        from .experiments.check import stale_results

        problems += [f"stale result: {line}" for line in stale_results(results, kernels_root=root)]
    return problems
