"""``pip install -e ".[test]"`` without the docs extra: the suite still runs.

The docs extra (mkdocs, Material, PyYAML, …) is simulated missing by
blocking its imports in a child pytest that only collects the tests: every
file must collect, the site tests skipped with a reason; under CI=true the
same missing extra is an error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS_EXTRA = ("yaml", "mkdocs", "material", "mkdocs_static_i18n", "mkdocstrings")
CHILD = (
    "import sys\n"
    f"sys.modules.update(dict.fromkeys({DOCS_EXTRA!r}))  # None: `import yaml` raises ImportError\n"
    "import pytest\n"
    "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', '-rs', 'tests']))\n"
)


def _collect(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def test_without_the_docs_extra_the_tests_collect_and_site_tests_skip() -> None:
    done = _collect(ci=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "error" not in done.stdout.lower().split("\n")[-2], done.stdout[-2000:]
    assert "yaml is not installed: pip install -e '.[docs]'" in done.stdout


def test_under_ci_a_missing_docs_extra_fails() -> None:
    done = _collect(ci=True)
    assert done.returncode != 0
    assert "yaml is not installed" in done.stdout
