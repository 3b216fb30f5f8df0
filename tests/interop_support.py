"""The optional interop packages (Keras, ONNX, onnxruntime) for the tests.

:func:`need` imports one or skips the test when it is missing, except under
``CI=true`` where a missing package is a failure (``.ci/run`` installs the
``interop`` extra), as the site tests do with node and katex.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """``module`` imported; skipped (or failed under CI=true) when it is not installed."""
    if module == "keras":
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed: pip install -e '.[interop]'"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
