"""No module outside ``derive/cells/`` (and the torch interop, whose job is
to map torch modules to their cells) keeps a list of cells or branches on a
cell's name: what differs between cells is read off the cells.

The package's source is scanned for string literals equal to a known cell
name; docstrings (examples) and comments are not code and are left out, and
the generated kernels (one per cell, each naming its own cell) too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import derive

PACKAGE = Path(derive.__file__).resolve().parent
ALLOWED = ("cells/", "interop/torch.py", "interop/keras.py", "interop/onnx.py")
"""Where cell names belong: the cells themselves, and the bridges whose job
is to say which cell computes each framework's layer (torch, Keras, ONNX)."""


def _generated_kernel(path: Path) -> bool:
    return "kernels" in path.parent.parts[-2:] and path.stem in derive.names()


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are docstrings (or bare strings
    documenting an attribute)."""
    found = set()
    for node in ast.walk(tree):
        for child in getattr(node, "body", []) if isinstance(getattr(node, "body", None), list) else []:
            if isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant) and isinstance(child.value.value, str):
                found.add(id(child.value))
    return found


def cell_name_literals(source: str, names: set[str]) -> list[tuple[int, str]]:
    """Every (line, literal) of ``source`` whose string literal is a cell name."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and node.value in names and id(node) not in docs
    ]


def test_no_module_outside_the_cells_names_a_cell() -> None:
    names = set(derive.names())
    offenders = []
    scanned = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(ALLOWED) or _generated_kernel(path):
            continue
        scanned += 1
        for line, literal in cell_name_literals(path.read_text(encoding="utf-8"), names):
            offenders.append(f"derive/{relative}:{line}: {literal!r}")
    assert scanned > 20, f"only {scanned} modules scanned: is the package where it should be?"
    assert not offenders, "cell names outside derive/cells/ (read them off the cells instead):\n" + "\n".join(offenders)


def test_the_scan_sees_a_branch_on_a_name_and_ignores_docstrings() -> None:
    """The detector itself: a branch on a name is caught, a docstring example is not."""
    source = '"""Example: derive.cell("gru")."""\n\ndef f(name):\n    """``f("lstm")``."""\n    if name == "gru":\n        return 1\n'
    assert cell_name_literals(source, {"gru", "lstm"}) == [(5, "gru")]
