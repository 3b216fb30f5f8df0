"""Time the derivation of every cell, cold (a fresh Python process each run).

"Cold" means nothing cached: the process imports derive, builds each cell
from its equations and derives its backward step, its state Jacobians and
its LaTeX. Prints the median over ``--repeat`` fresh processes, per cell
and in total, and the time of ``derive build`` (which also generates the
kernels). Run: ``python benchmarks/derivation.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, time
t0 = time.perf_counter()
import derive
t_import = time.perf_counter() - t0
times = {}
for name in derive.NAMES:
    t = time.perf_counter()
    cell = derive.cell(name)
    cell.backward, cell.jacobians, cell.latex("all"), cell.latex("jacobian")
    times[name] = time.perf_counter() - t
print(json.dumps({"import": t_import, "cells": times, "total": time.perf_counter() - t0}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes to time (default 5)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout) for _ in range(args.repeat)]
    print(f"cold derivation, median of {args.repeat} fresh processes")
    print(f"  import derive        {statistics.median(r['import'] for r in runs):7.3f} s")
    for name in runs[0]["cells"]:
        print(f"  {name:<20} {statistics.median(r['cells'][name] for r in runs):7.3f} s")
    print(f"  total (all 5 cells)  {statistics.median(r['total'] for r in runs):7.3f} s   (target < 5 s)")
    builds = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as root:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "derive.cli", "build", "--root", root], capture_output=True, check=True)
            builds.append(time.perf_counter() - t)
    print(f"  derive build         {statistics.median(builds):7.3f} s   (target < 10 s; a fresh process, kernels included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
