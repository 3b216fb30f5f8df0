"""The page "Write your own cell" shows a real file, and every ``derive``
command it gives runs on that file as the page says (both languages)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import derive
from derive.cli import main
from derive.site.directives import Sources, expand

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE = "examples/light_gru.py"
PAGES = ["own-cell.md", "own-cell.fr.md"]


def commands(page: str) -> list[str]:
    """Every ``derive …`` command of ``page``: in bash blocks and in inline code."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found = re.findall(r"^derive [^\n]+$", "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S)), re.M)
    found += [c for c in re.findall(r"`(derive [^`]+)`", text) if c not in found]
    return found


@pytest.mark.parametrize("page", PAGES)
def test_the_page_shows_the_example_file_whole(page: str) -> None:
    markdown = (DOCS / page).read_text(encoding="utf-8")
    assert f"{{{{ derive: file {EXAMPLE} }}}}" in markdown
    expanded = expand(markdown, page=page, lang="fr" if ".fr." in page else "en", sources=Sources(DOCS)).markdown
    assert (DOCS / EXAMPLE).read_text(encoding="utf-8").rstrip("\n") in expanded


@pytest.mark.parametrize("page", PAGES)
def test_every_command_of_the_page_runs(page: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the page's paths are relative to the project's root
    found = commands(page)
    assert {"show", "prove", "build"} <= {shlex.split(c)[1] for c in found}, found
    for command in found:
        argv = [tmp_path / "out" if a == "my_kernels" else a for a in shlex.split(command)[1:]]
        assert main([str(a) for a in argv]) == 0, command
        out = capsys.readouterr().out
        if " prove " in f" {command} ":
            assert "light_gru: all checks hold" in out
        if "--jacobian" in command:
            assert "classification: light_gru: full, state-dependent" in out
    kernel = tmp_path / "out" / "light_gru.py"
    assert kernel.is_file() and "do not edit" in kernel.read_text(encoding="utf-8")


def test_the_example_is_a_cell_of_its_own() -> None:
    cell = derive.load_cell(DOCS / EXAMPLE)
    assert cell.name == "light_gru" and cell.name not in derive.names()


def test_the_file_directive_refuses_a_file_outside_the_docs() -> None:
    from derive.site.directives import DirectiveError

    with pytest.raises(DirectiveError, match="inside the docs directory"):
        expand("{{ derive: file ../pyproject.toml }}", page="x.md", lang="en", sources=Sources(DOCS))
    with pytest.raises(DirectiveError, match="does not exist"):
        expand("{{ derive: file examples/nothing.py }}", page="x.md", lang="en", sources=Sources(DOCS))


def test_the_structure_directive_says_what_the_jacobian_says() -> None:
    en = expand("{{ derive: structure min_gru }}", page="x.md", lang="en", sources=Sources(DOCS)).markdown
    fr = expand("{{ derive: structure min_gru }}", page="x.md", lang="fr", sources=Sources(DOCS)).markdown
    assert "**diagonal, state-independent, linear scan**" in en and "$a^{(t)} = 1 - G_u^{(t)}$" in en
    assert "**diagonale, indépendante de l’état, balayage linéaire**" in fr and "\u00a0: " in fr
    gru = expand("{{ derive: structure gru }}", page="x.md", lang="en", sources=Sources(DOCS)).markdown
    assert "**full, state-dependent**" in gru and "linear scan" not in gru
