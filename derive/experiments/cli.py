"""``derive experiment gradient-flow|memory|gates|forget-bias|all|plots``: run an
experiment, write its results; or redraw the plots from the results.

The lead's ``derive/cli.py`` calls :func:`add_parser` with its subparsers;
``python -m derive.experiments.cli`` runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from ..cells import names as registered_names
from ..kernels import BACKENDS, BackendUnavailableError, check_backend
from . import CELLS, default_backend
from . import forget_bias as fb
from . import gates
from . import gradient_flow as gf
from . import memory
from .check import REPO_RESULTS_DIR
from .progress import Progress, run_jobs
from .results import EXPERIMENTS, RESULTS_DIR, provenance, read_json, result_path, write_json
from .train import FULL_TRAINING, QUICK_TRAINING, TrainingConfig

FULL = {"seeds": 3, "lengths": (10, 50, 100, 200), "max_lag": 200, "bias_seeds": 5, "bias_length": 200}
QUICK = {"seeds": 2, "lengths": (5, 20), "max_lag": 20, "bias_seeds": 2, "bias_length": 20}
QUICK_OUT = Path(tempfile.gettempdir()) / "derive-experiments-quick"
"""Where ``--quick`` writes by default: never over the committed results."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cells(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected at least one cell")
    for name in names:
        if name not in registered_names():  # any registered cell: one joins the experiments by being run
            raise argparse.ArgumentTypeError(
                f"unknown cell {name!r}; known cells: {', '.join(registered_names())}"
            )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"cell listed twice in {text!r}")
    return names


MAX_LENGTH = 10_000
"""The longest sequence (and lag) an experiment accepts: memory and time grow with it."""
MAX_SEEDS = 100
MAX_STEPS = 1_000_000
MAX_JOBS = 64


def _count(what: str, minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum], errors naming ``what``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what}: expected at least {minimum}, got {value}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{what}: expected at most {maximum}, got {value}")
        return value

    parse.__name__ = what
    return parse


_length = _count("length", 2, MAX_LENGTH)


def _biases(text: str) -> tuple[float, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected at least one bias")
    biases = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bias: expected a number, got {part!r}") from None
        if not abs(value) < 100:  # also refuses nan and inf
            raise argparse.ArgumentTypeError(f"bias: expected a number between -100 and 100, got {part!r}")
        biases.append(value)
    if len(set(biases)) != len(biases):
        raise argparse.ArgumentTypeError(f"bias listed twice in {text!r}")
    return tuple(sorted(biases))


def _lengths(text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected at least one length")
    lengths = tuple(_length(part) for part in parts)
    if len(set(lengths)) != len(lengths):
        raise argparse.ArgumentTypeError(f"length listed twice in {text!r}")
    return tuple(sorted(lengths))


def _common_options(parser: argparse.ArgumentParser, *, cells: tuple[str, ...] | None = CELLS,
                    cells_help: str = "", seeds: str = "3; 2 with --quick") -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run (seconds) that checks the pipeline; writes to "
                        f"{QUICK_OUT} unless --out is given")
    parser.add_argument("--seeds", type=_count("seed count", 1, MAX_SEEDS), default=None,
                        help=f"number of seeds, 0 .. N-1, 1 ≤ N ≤ {MAX_SEEDS} (default {seeds})")
    parser.add_argument("--cells", type=_cells, default=cells,
                        help=f"comma-separated cells (default {cells_help or ','.join(cells or ())})")
    parser.add_argument("--steps", type=_count("steps", 1, MAX_STEPS), default=None,
                        help=f"training steps per model, 1 to {MAX_STEPS} (default "
                        f"{FULL_TRAINING.steps}; {QUICK_TRAINING.steps} with --quick)")
    parser.add_argument("--jobs", type=_count("jobs", 1, MAX_JOBS), default=min(2, os.cpu_count() or 1),
                        help=f"processes to run on, 1 to {MAX_JOBS} (default: up to 2); results do not depend on it")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"directory for the JSON and SVG files, checked before anything is computed "
                        f"(default: {RESULTS_DIR} in the project checkout derive is imported from)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="the kernels that run the cells, recorded in the results (default: numba when "
                        "Numba is installed, the fast extra, else numpy); the numbers agree within float tolerance")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``experiment`` command to ``derive``'s subcommands."""
    parser = subparsers.add_parser(
        "experiment",
        help="run the gradient-flow or memory experiment with the generated kernels",
        description="Run an experiment with the generated kernels and write its "
        "results (JSON) and plots (SVG, English and French, light and dark).",
    )
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT",
                                        parser_class=OneLineParser)
    experiments.required = True
    flow = experiments.add_parser(
        "gradient-flow",
        help="the gradient reaching the state k steps back, at init and after training",
        description=gf.__doc__.splitlines()[0],
    )
    _common_options(flow)
    flow.add_argument("--max-lag", type=_count("max lag", 2, MAX_LENGTH), default=None,
                      help=f"the longest lag, also the training length, 2 to {MAX_LENGTH} (default 200; 20 with --quick)")
    mem = experiments.add_parser(
        "memory",
        help="the adding problem at several lengths: test error against the baseline",
        description=memory.__doc__.splitlines()[0],
    )
    _common_options(mem)
    mem.add_argument("--lengths", type=_lengths, default=None,
                     help=f"comma-separated sequence lengths, each 2 to {MAX_LENGTH} "
                     "(default 10,50,100,200; 5,20 with --quick)")
    gate = experiments.add_parser(
        "gates",
        help="the keep gate of each trained gated cell over adding-problem sequences",
        description=gates.__doc__.splitlines()[0],
    )
    _common_options(gate)
    gate.add_argument("--length", type=_length, default=None,
                      help=f"the sequence length trained and measured, 2 to {MAX_LENGTH} (default 200; 20 with --quick)")
    bias = experiments.add_parser(
        "forget-bias",
        help="the keep (forget) gate's bias at initialisation: 0 to 3 on the LSTM at T = 200",
        description=fb.__doc__.splitlines()[0],
    )
    _common_options(bias, cells=None, cells_help=fb.DEFAULT_CELLS_HELP, seeds="5; 2 with --quick")
    bias.add_argument("--length", type=_length, default=None,
                      help=f"the sequence length, 2 to {MAX_LENGTH} (default 200; 20 with --quick)")
    bias.add_argument("--biases", type=_biases, default=fb.BIASES,
                      help="comma-separated biases added at initialisation "
                      f"(default {','.join(f'{b:g}' for b in fb.BIASES)})")
    both = experiments.add_parser(
        "all",
        help="memory, gradient-flow and gates on the models memory trained, then forget-bias",
        description="Run the memory experiment, then the gradient-flow and gates experiments "
        "with the longest length, measuring the models memory has just trained instead of "
        "training them again, then the forget-bias experiment on its default cells (at bias 0, "
        "memory's models again). Writes the same files as the four commands.",
    )
    _common_options(both)
    both.add_argument("--lengths", type=_lengths, default=None,
                      help=f"comma-separated sequence lengths, each 2 to {MAX_LENGTH}; the longest is also the longest lag "
                      "and the length of the gates and forget-bias experiments "
                      "(default 10,50,100,200; 5,20 with --quick)")
    redraw = experiments.add_parser(
        "plots",
        help="redraw every plot from the result files (no training)",
        description="Redraw the plots (SVG, every language and colour scheme) of every "
        "experiment whose result file (JSON) is in the directory.",
    )
    redraw.add_argument("--out", type=Path, default=None,
                        help=f"directory of the JSON files, where the SVG files go (default {RESULTS_DIR})")
    parser.set_defaults(func=run)


def _training(args: argparse.Namespace) -> TrainingConfig:
    base = QUICK_TRAINING if args.quick else FULL_TRAINING
    base = replace(base, backend=args.backend)
    return replace(base, steps=args.steps) if args.steps is not None else base


def _command(experiment: str, args: argparse.Namespace, extra: list[str]) -> str:
    """The command that reproduces these results (output and process count
    left out: they do not change the numbers)."""
    parts = ["derive", "experiment", experiment]
    if args.quick:
        parts.append("--quick")
    parts += ["--seeds", str(args.seeds), "--cells", ",".join(args.cells)]
    if args.steps is not None:
        parts += ["--steps", str(args.steps)]
    return " ".join(parts + extra)


def _write(experiment: str, command: str, args: argparse.Namespace, data: dict, out: Path) -> list[Path]:
    from .plots import write_plots  # matplotlib: imported only when plots are drawn, not for `derive --help`

    payload = {**provenance(command, args.cells, range(args.seeds), args.backend), "data": data}
    json_path = result_path(out, experiment)
    write_json(json_path, payload)
    return [json_path, *write_plots(experiment, data, args.seeds, out)]


def _run_memory(args: argparse.Namespace, out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Run the memory experiment, write its files; return its runs at the
    longest length (with their trained parameters and losses), by (cell, seed)."""
    lengths = args.lengths or (QUICK if args.quick else FULL)["lengths"]
    seeds = list(range(args.seeds))
    training = _training(args)
    jobs = memory.memory_jobs(args.cells, lengths, seeds, training)
    progress = Progress(len(jobs), "memory")
    runs = run_jobs(memory.run_memory_job, jobs, processes=args.jobs, progress=progress)
    data = memory.aggregate(runs, args.cells, lengths, seeds, training)
    command = _command("memory", args, ["--lengths", ",".join(map(str, lengths))])
    paths = _write("memory", command, args, data, out)
    _report("memory", progress, paths)
    return {(r["cell"], r["seed"]): r for r in runs if "params" in r}


def _run_gradient_flow(
    args: argparse.Namespace, out: Path, max_lag: int,
    trained: dict[tuple[str, int], dict] | None = None,
) -> None:
    seeds = list(range(args.seeds))
    training = _training(args)
    jobs = gf.gradient_flow_jobs(args.cells, seeds, max_lag, training, trained)
    progress = Progress(len(jobs), "gradient-flow")
    runs = run_jobs(gf.run_gradient_flow_job, jobs, processes=args.jobs, progress=progress)
    data = gf.aggregate(runs, args.cells, seeds, max_lag, training)
    command = _command("gradient-flow", args, ["--max-lag", str(max_lag)])
    _report("gradient-flow", progress, _write("gradient-flow", command, args, data, out))


def _run_gates(
    args: argparse.Namespace, out: Path, length: int,
    trained: dict[tuple[str, int], dict] | None = None,
) -> None:
    seeds = list(range(args.seeds))
    training = _training(args)
    jobs = gates.gates_jobs(args.cells, seeds, length, training, trained)
    if not jobs:
        raise SystemExit(f"derive experiment gates: error: none of the cells {','.join(args.cells)} "
                         "has a keep gate")
    progress = Progress(len(jobs), "gates")
    runs = run_jobs(gates.run_gates_job, jobs, processes=args.jobs, progress=progress)
    data = gates.aggregate(runs, args.cells, seeds, length, training)
    command = _command("gates", args, ["--length", str(length)])
    _report("gates", progress, _write("gates", command, args, data, out))


def _run_forget_bias(args: argparse.Namespace, out: Path, length: int, seed_count: int,
                     cells: tuple[str, ...], trained: dict[tuple[str, int], dict[str, Any]] | None = None) -> None:
    seeds = list(range(seed_count))
    training = _training(args)
    for cell in cells:
        if gates.keep_gate(cell) is None:
            raise SystemExit(f"derive experiment forget-bias: error: cells: {cell!r} has no keep gate "
                             f"whose bias could be moved; cells with one: {','.join(gates.gated_cells(CELLS))}")
    jobs = fb.forget_bias_jobs(cells, args.biases, seeds, length, training, trained)
    progress = Progress(len(jobs), "forget-bias")
    runs = run_jobs(fb.run_forget_bias_job, jobs, processes=args.jobs, progress=progress)
    data = fb.aggregate(runs, cells, args.biases, seeds, length, training)
    run_args = argparse.Namespace(**{**vars(args), "seeds": seed_count, "cells": cells})
    command = _command("forget-bias", run_args, [
        "--length", str(length), "--biases", ",".join(f"{b:g}" for b in args.biases)])
    _report("forget-bias", progress, _write("forget-bias", command, run_args, data, out))


def _redraw(out: Path) -> int:
    from .plots import write_plots

    found = [e for e in EXPERIMENTS if result_path(out, e).is_file()]
    if not found:
        raise SystemExit(f"derive experiment plots: error: no result file in {out}")
    for experiment in found:
        result = read_json(result_path(out, experiment))
        paths = write_plots(experiment, result["data"], len(result["seeds"]), out)
        print(f"{experiment}: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def _report(experiment: str, progress: Progress, paths: list[Path]) -> None:
    written = ", ".join(str(p) for p in paths)
    print(f"{experiment}: {progress.elapsed:.1f} s; wrote {written}", file=sys.stderr)


def output_dir(out: Path | None, quick: bool) -> Path:
    """The directory the results go to, made and checked writable before any
    computing: ``out`` if given, else the project's results directory (or
    the ``--quick`` one). Raises ``ValueError`` (one line) when it cannot be used."""
    project = Path(__file__).resolve().parents[2]
    if out is None and not quick and not (project / "mkdocs.yml").is_file():
        raise ValueError(f"--out: derive is not imported from a project checkout ({project} has no mkdocs.yml), "
                         "give the directory for the results")
    path = out if out is not None else QUICK_OUT if quick else REPO_RESULTS_DIR
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out: expected a directory, got {str(path)!r} (not a directory)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(f"--out: expected a directory we can write in, got {str(path)!r} ({error.strerror})") from None
    return path


def run(args: argparse.Namespace) -> int:
    """Run the experiment ``args`` describe; return the exit status."""
    if args.experiment == "plots":
        return _redraw(args.out or RESULTS_DIR)
    preset = QUICK if args.quick else FULL
    seeds_given = args.seeds is not None
    if args.seeds is None:
        args.seeds = preset["bias_seeds"] if args.experiment == "forget-bias" else preset["seeds"]
    try:
        out = output_dir(args.out, args.quick)
        args.backend = check_backend(args.backend or default_backend())
    except (ValueError, BackendUnavailableError) as error:
        print(f"derive experiment: error: {error}", file=sys.stderr)
        return 2
    print(f"experiments on the {args.backend} kernels", file=sys.stderr)
    if args.experiment == "memory":
        _run_memory(args, out)
    elif args.experiment == "gradient-flow":
        _run_gradient_flow(args, out, args.max_lag or preset["max_lag"])
    elif args.experiment == "gates":
        _run_gates(args, out, args.length or preset["max_lag"])
    elif args.experiment == "forget-bias":
        _run_forget_bias(args, out, args.length or preset["bias_length"], args.seeds,
                         args.cells or fb.default_cells(CELLS))
    else:
        start = time.perf_counter()
        runs = _run_memory(args, out)
        trained = {key: run["params"] for key, run in runs.items()}
        longest = max(args.lengths or preset["lengths"])
        _run_gradient_flow(args, out, longest, trained)
        _run_gates(args, out, longest, trained)
        args.biases = fb.BIASES
        _run_forget_bias(args, out, longest, args.seeds if seeds_given else preset["bias_seeds"],
                         fb.default_cells(args.cells) or fb.default_cells(CELLS), runs)
        print(f"all: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser with ``experiment`` as its only command."""
    parser = OneLineParser(prog="derive")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m derive.experiments.cli experiment ...``."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
