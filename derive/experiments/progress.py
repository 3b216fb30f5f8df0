"""A progress bar on stderr and a small pool that runs independent jobs.

No dependency: on a terminal the bar redraws one line; elsewhere (CI logs)
it prints a line every tenth of the work, so logs stay short.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO, TypeVar

Result = TypeVar("Result")


class Job(Protocol):
    """What the pool needs from a job: a relative cost and a label."""

    @property
    def cost(self) -> float: ...

    def label(self) -> str: ...


JobT = TypeVar("JobT", bound=Job)


class Progress:
    """Counts finished jobs and shows it on ``stream``."""

    WIDTH = 30

    def __init__(self, total: int, title: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._tenths_shown = 0

    def advance(self, label: str) -> None:
        """Record one finished job called ``label``."""
        self.done += 1
        elapsed = time.perf_counter() - self.start
        if self._tty:
            filled = self.WIDTH * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = f"\r{self.title} [{bar}] {self.done}/{self.total} {elapsed:5.0f}s {label}"
            self.stream.write(line[:110].ljust(110))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            tenths = 10 * self.done // max(self.total, 1)
            if tenths > self._tenths_shown or self.done == self.total:
                self._tenths_shown = tenths
                self.stream.write(f"{self.title}: {self.done}/{self.total} ({elapsed:.0f} s) {label}\n")
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Run BLAS on one thread: the matrices are small, and two processes on
    two cores beat two threads fighting over each; one process beats two
    threads handing tiny products to each other too. Returns the limit, a
    context manager that lifts it on exit (the pool's workers keep it).

    Numba's ``np.dot`` calls SciPy's BLAS, a library of its own: it is
    loaded first, since threadpoolctl limits only the libraries loaded."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it, products split over threads may move the last bits
        return contextlib.nullcontext()
    if importlib.util.find_spec("numba") is not None and importlib.util.find_spec("scipy") is not None:
        importlib.import_module("scipy.linalg.cython_blas")
    return threadpool_limits(1)


def _indexed(call: tuple[Callable[[JobT], Result], int, JobT]) -> tuple[int, Result]:
    function, index, job = call
    return index, function(job)


def run_jobs(
    function: Callable[[JobT], Result],
    jobs: Sequence[JobT],
    *,
    processes: int,
    progress: Progress,
) -> list[Result]:
    """``[function(job) for job in jobs]``, on ``processes`` processes.

    Results come back in the order of ``jobs`` whatever the order in which
    they finish, and each job seeds its own random streams, so the output
    does not depend on the number of processes. The costliest jobs start
    first so that the processes finish together.
    """
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost)
    results: dict[int, Result] = {}
    if processes <= 1 or len(jobs) <= 1:
        with _single_threaded_blas():  # as in the workers: the same numbers to the last bit
            for index in order:
                results[index] = function(jobs[index])
                progress.advance(jobs[index].label())
    else:
        calls = [(function, index, jobs[index]) for index in order]
        with multiprocessing.get_context().Pool(processes, initializer=_single_threaded_blas) as pool:
            for index, result in pool.imap_unordered(_indexed, calls):
                results[index] = result
                progress.advance(jobs[index].label())
    return [results[i] for i in range(len(jobs))]
