"""The ``derive`` command: list and show cells, build and check generated files.

Errors a user can make (an unknown cell, a bad option) exit with status 2
and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .cells import NAMES, UnknownCellError, cell


class _Parser(argparse.ArgumentParser):
    """argparse, with errors reduced to one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cmd_list(args: argparse.Namespace) -> int:
    width = max(len(n) for n in NAMES)
    for name in NAMES:
        c = cell(name)
        print(f"{name:<{width}}  {c.title}: {c.summary}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    c = cell(args.cell)
    which = "backward" if args.backward else "jacobian" if args.jacobian else "forward"
    if args.all:
        which = "all"
    print(c.latex(which) if args.latex else c.text(which))
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .artefacts import build

    written = build(args.root)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("all generated files were up to date: nothing written")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .artefacts import check

    problems = check(args.root)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print("run `derive build` to regenerate", file=sys.stderr)
        return 1
    print("all generated files are up to date")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="derive",
        description="Recurrent cells as symbolic equations: derived gradients, LaTeX, generated NumPy kernels.",
    )
    parser.add_argument("--version", action="version", version=f"derive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="list the known cells", description="List the known cells.")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "show",
        help="print a cell's equations",
        description="Print a cell's forward equations (default), its derived backward equations, "
        "or its state Jacobians, as text or LaTeX.",
    )
    p.add_argument("cell", help=f"one of: {', '.join(NAMES)}")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--backward", action="store_true", help="the derived backward (BPTT) step")
    group.add_argument("--jacobian", action="store_true", help="the state Jacobians ∂s(t)/∂s(t-1)")
    group.add_argument("--all", action="store_true", help="forward and backward")
    p.add_argument("--latex", action="store_true", help="print LaTeX (KaTeX-compatible) instead of text")
    p.set_defaults(func=_cmd_show)

    for name, func, text in (
        ("build", _cmd_build, "regenerate every generated file (the NumPy kernels) from the equations"),
        ("check", _cmd_check, "exit 1, naming each file, if a generated file differs from what the equations give"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--root", default=None, help="project root (default: the checkout derive is imported from)")
        p.set_defaults(func=func)

    try:
        from .experiments.cli import add_parser as add_experiment_parser
    except ImportError:  # the experiments need matplotlib, an optional dependency
        pass
    else:
        add_experiment_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``derive`` console script."""
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 terminal gets '?' for ⊙, σ, not a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UnknownCellError as e:
        print(f"derive: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `derive show gru | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a read-only checkout, a full disk: one line, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"derive: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
