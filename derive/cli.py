"""The ``derive`` command: list and show cells, build and check generated files.

Errors a user can make (an unknown cell, a bad option) exit with status 2
and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .cell import CellError
from .cells import UnknownCellError, names, origin
from .load import resolve


class _Parser(argparse.ArgumentParser):
    """argparse, with errors reduced to one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cmd_list(args: argparse.Namespace) -> int:
    known = names()
    width = max(len(n) for n in known)
    kinds = {n: origin(n).kind for n in known}
    kind_width = max(len(k) for k in kinds.values())
    for name in known:
        c = resolve(name)
        where = "" if kinds[name] == "built-in" else f" [{origin(name).where}]"
        print(f"{name:<{width}}  {kinds[name]:<{kind_width}}  {c.title}: {c.summary}{where}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    c = resolve(args.cell)
    which = "backward" if args.backward else "jacobian" if args.jacobian else "forward"
    if args.all:
        which = "all"
    print(c.latex(which) if args.latex else c.text(which))
    if which == "jacobian" and not args.latex:
        from .structure import classify

        print()
        print("classification: " + classify(c).text())
    return 0


def _user_kernels(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """The kernel files of ``--cell FILE --out DIR [--backend B]`` and their content now:
    ``DIR/<cell>.py`` (NumPy), ``DIR/<cell>_numba.py`` (Numba)."""
    from .kernels import generate

    if not args.out:
        raise _Usage("--cell needs --out DIR (where the kernel module is written)")
    c = resolve(args.cell)
    backends = ("numpy", "numba") if args.backend == "all" else (args.backend or "numpy",)
    files = []
    for backend in backends:
        option = "" if args.backend in (None, "numpy") else f" --backend {args.backend}"
        command = f"derive build --cell {args.cell} --out {args.out}{option}"
        suffix = "" if backend == "numpy" else f"_{backend}"
        files.append((Path(args.out) / f"{c.name}{suffix}.py", generate(c, command, backend)))
    return files


class _Usage(Exception):
    """A bad combination of options: one line, exit 2."""


def _cmd_build(args: argparse.Namespace) -> int:
    if args.cell:
        for path, content in _user_kernels(args):
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.read_bytes() == content.encode():
                print(f"unchanged {path}")
            else:
                path.write_bytes(content.encode())
                print(f"wrote {path}")
        return 0
    if args.backend:
        raise _Usage("--backend goes with --cell FILE (derive build writes the built-in cells' kernels of every backend)")
    if args.out:
        raise _Usage("--out goes with --cell FILE (the built-in cells are written under --root)")
    from .artefacts import build

    written = build(args.root)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("all generated files were up to date: nothing written")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    if args.cell:
        problems = [f"{'stale' if path.is_file() else 'missing'}: {path}" for path, content in _user_kernels(args)
                    if not (path.is_file() and path.read_bytes() == content.encode())]
        fix = f"derive build --cell {args.cell} --out {args.out}" + (f" --backend {args.backend}" if args.backend else "")
    else:
        if args.out:
            raise _Usage("--out goes with --cell FILE")
        if args.backend:
            raise _Usage("--backend goes with --cell FILE (derive check checks every backend's kernels)")
        from .artefacts import check

        problems, fix = check(args.root), "derive build"
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"run `{fix}` to regenerate", file=sys.stderr)
        return 1
    print("all generated files are up to date")
    return 0


def _cmd_prove(args: argparse.Namespace) -> int:
    from .proof import prove

    c = resolve(args.cell)
    reference = _reference(args.reference) if args.reference else None
    steps = (1,) if args.quick else (1, 2)
    print(f"proving {c.name} ({c.source})")
    failed = 0
    for check in prove(c, reference=reference, steps=steps):
        print(check.line(), flush=True)
        failed += not check.ok
    print(f"{c.name}: {'all checks hold' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


def _reference(spec: str):  # noqa: ANN202 - a proof.Reference
    """``file.py:step`` → the function ``step`` of that file."""
    import importlib.util

    file, _, name = spec.rpartition(":")
    if not file or not name:
        raise _Usage(f"--reference: expected FILE.py:FUNCTION, got {spec!r}")
    module_spec = importlib.util.spec_from_file_location("derive_reference", file)
    if module_spec is None or module_spec.loader is None or not Path(file).is_file():
        raise CellError("no such file", source=file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - a user's file: reported in one line
        raise CellError(f"importing it raised {type(e).__name__}: {e}", source=file) from None
    step = getattr(module, name, None)
    if not callable(step):
        raise CellError(f"defines no function {name!r}", source=file)
    return step


# -- derive export: any cell as an ONNX model (derive.interop.onnx; needs the interop extra) --------
def _cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from .kernels import load as load_kernel

    c = resolve(args.cell)
    from .interop.onnx import OPSET, export_cell  # imports onnx only when called
    if args.params:
        if not Path(args.params).is_file():
            raise _Usage(f"--params: no such file {args.params}")
        with np.load(args.params) as npz:
            params = {k: npz[k] for k in npz.files}
        if args.n_x is not None or args.n_h is not None:
            raise _Usage("--n-x and --n-h go without --params (the sizes are the params')")
        how = f"--params {args.params}"
    else:
        if args.n_x is None or args.n_h is None:
            raise _Usage("--n-x and --n-h are needed without --params")
        try:
            params = load_kernel(c).init_params(args.n_x, args.n_h, seed=args.seed, dtype=args.dtype)
        except ValueError as e:
            raise _Usage(str(e)) from None
        how = f"--n-x {args.n_x} --n-h {args.n_h} --seed {args.seed} --dtype {args.dtype}"
    try:
        model = export_cell(c, params, command=f"derive export {args.cell} {how}")
    except ImportError as e:  # onnx missing: the message says which extra to install
        raise _Usage(f"{e}".splitlines()[0]) from None
    except ValueError as e:  # params that do not fit the cell: check_params names the key
        raise _Usage(f"--params: {e}") from None
    Path(args.onnx).parent.mkdir(parents=True, exist_ok=True)
    Path(args.onnx).write_bytes(model.SerializeToString())
    n_x, n_h = (v.type.tensor_type.shape.dim[2].dim_value for v in (model.graph.input[0], model.graph.output[0]))
    dtype = next(iter(params.values())).dtype
    print(f"wrote {args.onnx} ({c.name}, n_x={n_x}, n_h={n_h}, {dtype}, opset {OPSET})")
    return 0


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a cell as an ONNX model (its step in a Scan over time)",
        description="Write a cell (built-in or a file) as an ONNX model that runs its forward step in a Scan "
        "over time, with the weights of --params (an .npz of the kernel's params) or drawn as the kernel's "
        "init_params does for --n-x/--n-h. Inputs xs (T, B, n_x) and <state>0 (B, n_h); outputs ys and "
        "<state>T. Needs the interop extra: pip install 'derive[interop]'.",
    )
    p.add_argument("cell", help=f"a cell name ({', '.join(names())}) or a cell file (.py or .cell)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the model file to write")
    p.add_argument("--params", default=None, metavar="PARAMS.npz", help="the params (np.savez of the kernel's dict)")
    p.add_argument("--n-x", type=int, default=None, help="input size, without --params")
    p.add_argument("--n-h", type=int, default=None, help="state size, without --params")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn params, without --params (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="dtype of the drawn params")
    p.set_defaults(func=_cmd_export)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="derive",
        description="Recurrent cells as symbolic equations: derived gradients, LaTeX, generated NumPy and Numba kernels.",
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
    p.add_argument("cell", help=f"a cell name ({', '.join(names())}) or a cell file (.py or .cell)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--backward", action="store_true", help="the derived backward (BPTT) step")
    group.add_argument("--jacobian", action="store_true", help="the state Jacobians ∂s(t)/∂s(t-1), then their classification: "
                       "full or diagonal, state-dependent or not, linear scan")
    group.add_argument("--all", action="store_true", help="forward and backward")
    p.add_argument("--latex", action="store_true", help="print LaTeX (KaTeX-compatible) instead of text")
    p.set_defaults(func=_cmd_show)

    for name, func, text in (
        ("build", _cmd_build, "regenerate every generated file (the NumPy and Numba kernels, the pages' notebooks) from their sources"),
        ("check", _cmd_check, "exit 1, naming each file, if a generated file differs from what the equations give"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--root", default=None, help="project root (default: the checkout derive is imported from)")
        p.add_argument("--cell", default=None, metavar="FILE", help="a cell file (.py or .cell): its kernel only, in --out")
        p.add_argument("--out", default=None, metavar="DIR", help="with --cell: the directory of the kernel module <cell>.py "
                       "(<cell>_numba.py for the Numba backend)")
        p.add_argument("--backend", choices=("numpy", "numba", "all"), default=None,
                       help="with --cell: the kernel's backend, numpy (default), numba (the step loops compiled "
                       "with Numba; running it needs pip install -e \".[fast]\") or all (both)")
        p.set_defaults(func=func)

    p = sub.add_parser(
        "prove",
        help="prove a cell's derived gradients (symbolic, then finite differences)",
        description="Prove a cell's derived gradients: the derived VJPs equal SymPy's brute-force derivatives "
        "of the cell's forward exactly (n_h = 2, n_x = 2 and 3, one and two steps, activations opaque), "
        "then the generated kernel's gradients equal finite differences in float64. One line per check; "
        "exit 1 if any fails.",
    )
    p.add_argument("cell", help=f"a cell name ({', '.join(names())}) or a cell file (.py or .cell)")
    p.add_argument("--reference", metavar="FILE.py:FUNCTION", default=None,
                   help="an independent forward step(params, x, states, f) -> dict of new states (and output), "
                   "on SymPy matrices, f.sigmoid/f.tanh/… applied entry-wise; the brute force uses it instead of the cell's own forward")
    p.add_argument("--quick", action="store_true", help="one step only (the two-step proofs take longer)")
    p.set_defaults(func=_cmd_prove)

    _add_export_parser(sub)

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
    except (UnknownCellError, CellError, _Usage) as e:
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
