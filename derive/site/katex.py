"""KaTeX at build time: TeX strings to HTML through one ``node`` process.

The npm ``katex`` package (pinned in ``package.json``, installed with
``npm ci`` into ``node_modules/``) does the typesetting, so the site needs
no script and no network to show its formulas: only KaTeX's stylesheet and
fonts, which :func:`asset_files` lists for the build to copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).with_name("katex_render.cjs")
"""The node script that renders a batch (see its header for the protocol)."""


class KatexSetupError(RuntimeError):
    """node or the katex package is missing or not the pinned version."""


@dataclass(frozen=True)
class Formula:
    """One TeX string to typeset, in display or inline mode."""

    tex: str
    display: bool


@dataclass(frozen=True)
class Rendered:
    """What KaTeX made of a :class:`Formula`: HTML, or an error message.

    ``warnings`` are KaTeX's *strict* complaints (the formula rendered, but
    with something KaTeX would rather not accept, such as unicode text in
    math mode).
    """

    html: str | None
    error: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass
class KatexRenderer:
    """Renders formulas with the katex package installed under ``root``.

    Results are cached by formula, so a formula seen on several pages (or in
    both languages) is typeset once per process.
    """

    root: Path
    node: str = "node"
    _cache: dict[Formula, Rendered] = field(default_factory=dict, repr=False)
    calls: int = field(default=0, repr=False)  # node processes started, for tests

    @property
    def package_dir(self) -> Path:
        return self.root / "node_modules" / "katex"

    @property
    def dist_dir(self) -> Path:
        return self.package_dir / "dist"

    def check(self) -> str:
        """The installed katex version; raises :class:`KatexSetupError`
        unless node is on PATH and node_modules holds the version that
        ``package.json`` pins."""
        if shutil.which(self.node) is None:
            raise KatexSetupError(f"'{self.node}' is not on PATH: the site's formulas are typeset by node + katex")
        installed = self.package_dir / "package.json"
        if not installed.is_file():
            raise KatexSetupError(f"{self.package_dir} is missing: run `npm ci` in {self.root}")
        version = json.loads(installed.read_text(encoding="utf-8"))["version"]
        pinned = pinned_version(self.root / "package.json")
        if version != pinned:
            raise KatexSetupError(
                f"node_modules has katex {version} but package.json pins {pinned}: run `npm ci` in {self.root}"
            )
        return version

    def render(self, formulas: Iterable[Formula]) -> dict[Formula, Rendered]:
        """Typeset every formula not already cached, in one node process."""
        wanted = list(dict.fromkeys(formulas))
        missing = [f for f in wanted if f not in self._cache]
        if missing:
            self._cache.update(zip(missing, self._run(missing)))
        return {f: self._cache[f] for f in wanted}

    def _run(self, formulas: Sequence[Formula]) -> list[Rendered]:
        request = json.dumps({"items": [{"tex": f.tex, "display": f.display} for f in formulas]})
        self.calls += 1
        proc = subprocess.run(
            [self.node, str(SCRIPT)],
            input=request,
            capture_output=True,
            text=True,
            encoding="utf-8",
            cwd=self.root,
            env=_node_env(self.root),
            check=False,
        )
        if proc.returncode != 0:
            raise KatexSetupError(f"{SCRIPT.name} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        answer = json.loads(proc.stdout)
        warnings: dict[int, list[str]] = {}
        for index, message in answer["warnings"]:
            warnings.setdefault(index, []).append(message)
        return [
            Rendered(r.get("html"), r.get("error"), tuple(warnings.get(i, ())))
            for i, r in enumerate(answer["results"])
        ]


def pinned_version(package_json: Path) -> str:
    """The exact katex version ``package.json`` asks for."""
    return json.loads(package_json.read_text(encoding="utf-8"))["dependencies"]["katex"]


def asset_files(dist_dir: Path) -> list[tuple[str, Path]]:
    """KaTeX's stylesheet and the fonts it names: (path in the site, source).

    Only the fonts ``katex.min.css`` refers to are listed, so a renamed font
    shows up as a missing file rather than a silent fallback.
    """
    css = dist_dir / "katex.min.css"
    files = [("assets/katex/katex.min.css", css)]
    for name in sorted(set(_font_urls(css.read_text(encoding="utf-8")))):
        files.append((f"assets/katex/{name}", dist_dir / name))
    return files


def _font_urls(css: str) -> list[str]:
    return re.findall(r"url\((fonts/[A-Za-z0-9_.-]+)\)", css)


def _node_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # the script lives in the Python package; katex lives in the project
    env["NODE_PATH"] = str(root / "node_modules")
    return env
