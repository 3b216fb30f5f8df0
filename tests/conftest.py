"""Shared fixtures.

``built_site``: the site, built once per session with ``mkdocs build
--strict`` into a temporary directory (used by the site and browser tests).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def site_build_missing() -> str | None:
    """Why the site cannot be built here, or None if it can."""
    if shutil.which("node") is None:
        return "node is not on PATH (the site's formulas are typeset by node + katex)"
    if not (ROOT / "node_modules" / "katex" / "package.json").is_file():
        return "node_modules/katex is missing: run `npm ci`"
    for module in ("mkdocs", "material", "mkdocs_static_i18n", "mkdocstrings"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install -e '.[docs]'"
    return None


def require_extra(module: str, extra: str):  # noqa: ANN201 - the module
    """Import ``module`` for a test file, or skip the whole file with the
    reason when the optional ``extra`` is not installed (``pip install -e
    ".[test]"`` alone); under CI=true a missing extra is a failure."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed: pip install -e '.[{extra}]'"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason, allow_module_level=True)


KERNEL_BACKENDS = ("numpy", "numba")
"""The kernel backends the kernel tests run on (``derive.kernels.BACKENDS``)."""


@pytest.fixture(params=KERNEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each kernel backend in turn: a test taking ``backend`` runs on the
    NumPy kernels and on the Numba ones. The Numba cases skip, saying how to
    install Numba, when it is missing (under CI=true that is a failure)."""
    if request.param == "numba" and importlib.util.find_spec("numba") is None:
        reason = "numba is not installed: pip install -e '.[fast]'"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return request.param


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site (a directory); skipped when node/katex/mkdocs are
    missing, except under CI=true where that is a failure."""
    reason = site_build_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    site = tmp_path_factory.mktemp("built") / "site"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    seconds = time.perf_counter() - start
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "site-build.log").write_text(f"mkdocs build --strict: exit {proc.returncode} in {seconds:.1f} s\n\n{proc.stderr}", encoding="utf-8")
    if proc.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    return site


# the browser fixtures, shared by every tests/test_site_browser*.py file
from browser_support import base_url, browser, session  # noqa: E402,F401
