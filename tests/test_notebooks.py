"""The pages' notebooks (derive/notebooks.py): generated from the pages,
committed, byte-for-byte reproducible, caught by ``derive check`` when
stale, valid nbformat, and every one of them executes without an error."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

import derive
from derive import artefacts, notebooks
from derive.notebooks import NotebookError, render
from derive.site.directives import ARITY

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ARTIFACTS = ROOT / "test-artifacts"
PAGES = ("rnn", "gru-simple", "gru", "lstm", "gradients", "vanishing", "experiments")
LANGS = ("en", "fr")
NOTEBOOKS = [DOCS / "notebooks" / f"{page}.{lang}.ipynb" for page in PAGES for lang in LANGS]


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is not installed: pip install -e '.[test]'")
        pytest.skip(f"{module} is not installed: pip install -e '.[notebooks]'")


def test_each_page_has_a_notebook_in_both_languages() -> None:
    made = {rel for rel in artefacts.artefacts(ROOT) if rel.endswith(".ipynb")}
    assert made == {f"docs/notebooks/{p.name}" for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        assert path.is_file(), f"missing {path}: run `derive build`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_canonical_and_has_no_outputs(path: Path) -> None:
    _need("nbformat")
    import nbformat

    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nbformat.writes(nb) + "\n" == text  # what nbformat itself would write
    ids = [cell["id"] for cell in nb.cells]
    assert ids == [f"cell-{n:03d}" for n in range(len(ids))]
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is None and cell.outputs == []
    page, lang = path.name.split(".")[:2]
    source = f"{page}.md" if lang == "en" else f"{page}.{lang}.md"
    header = nb.cells[0].source
    assert "derive build" in header and f"docs/{source}" in header
    assert f"jupyter lab docs/notebooks/{path.name}" in header
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_follows_the_page() -> None:
    page = "\n".join(
        [
            "# Title",
            "Prose with $x^{(t)}$ and [a link](gru.md#the-idea).",
            "{{ derive: forward gru }}",
            "{{ derive: notebook }}",
            "```python",
            "print(1)",
            "```",
            "```bash",
            "derive build",
            "```",
            '!!! note "A note"',
            "    Noted.",
            "",
            '??? success "Answer"',
            "    Because.",
            "",
            "    ```pycon",
            "    >>> for k in range(2):",
            "    ...     print(k)",
            "    0",
            "    1",
            "    ```",
        ]
    )
    nb = json.loads(render(page, source="p.fr.md", page="p", lang="fr"))
    cells = [(c["cell_type"], "".join(c["source"]), c["metadata"]) for c in nb["cells"]]
    kinds = [k for k, _, _ in cells]
    assert kinds == ["markdown", "code", "markdown", "code", "code", "markdown", "markdown", "markdown", "code"]
    assert "Généré par `derive build`" in cells[0][1] and "jupyter lab docs/notebooks/p.fr.ipynb" in cells[0][1]
    assert "[a link](../gru.fr.md#the-idea)" in cells[2][1]
    assert cells[3][1].startswith('derive.cell("gru")')
    assert cells[4][1] == "print(1)"
    assert cells[5][1] == "```bash\nderive build\n```"
    assert cells[6][1] == "> **A note**\n>\n> Noted."
    assert cells[7][1] == "<details><summary>Answer</summary>\n\nBecause.\n\n</details>"
    assert cells[8][1] == "for k in range(2):\n    print(k)"
    assert cells[8][2] == {"jupyter": {"source_hidden": True}}
    with pytest.raises(NotebookError, match=r"p\.md:2: no notebook code for directive '\{\{ derive: bogus x \}\}'"):
        render("text\n{{ derive: bogus x }}", source="p.md", page="p", lang="en")
    with pytest.raises(NotebookError, match=r"p\.md:1: code block never closed"):
        render("```python\nx = 1", source="p.md", page="p", lang="en")


def test_every_directive_kind_has_notebook_code() -> None:
    assert set(notebooks.DIRECTIVE_CODE) == set(ARITY)


def test_check_names_a_stale_or_missing_notebook(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(ROOT / "derive" / "kernels", root / "derive" / "kernels")
    shutil.copytree(DOCS, root / "docs", ignore=shutil.ignore_patterns("assets"))
    assert artefacts.check(root) == []
    page = root / "docs" / "gru.fr.md"
    page.write_text(page.read_text(encoding="utf-8").replace("## L’idée", "## L’idée du GRU"), encoding="utf-8")
    assert artefacts.check(root) == ["stale: docs/notebooks/gru.fr.ipynb"]
    (root / "docs" / "notebooks" / "rnn.en.ipynb").unlink()
    assert "missing: docs/notebooks/rnn.en.ipynb" in artefacts.check(root)
    artefacts.build(root)
    assert artefacts.check(root) == []
    assert "L’idée du GRU" in (root / "docs" / "notebooks" / "gru.fr.ipynb").read_text(encoding="utf-8")


def test_download_box_links_the_notebook_of_the_page_and_its_language() -> None:
    en = "\n".join(notebooks.download_box("gru.md", "en"))
    fr = "\n".join(notebooks.download_box("gru.fr.md", "fr"))
    assert '(notebooks/gru.en.ipynb){ download="gru.en.ipynb" }' in en
    assert "jupyter lab docs/notebooks/gru.en.ipynb" in en and 'pip install -e ".[notebooks]"' in en
    assert '(notebooks/gru.fr.ipynb){ download="gru.fr.ipynb" }' in fr and "Télécharger" in fr


@pytest.fixture(scope="module")
def executed() -> dict[str, tuple[object, float]]:
    """Every committed notebook, executed once with nbclient in a kernel
    that imports this checkout's derive; times written to test-artifacts/."""
    _need("nbclient")
    _need("ipykernel")
    import nbformat
    from nbclient import NotebookClient

    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env_path) if p)
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    results: dict[str, tuple[object, float]] = {}
    try:
        for path in NOTEBOOKS:
            nb = nbformat.read(path, as_version=4)
            start = time.perf_counter()
            client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
            client.execute()  # raises CellExecutionError on the first cell that fails
            results[path.name] = (nb, time.perf_counter() - start)
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_path
    ARTIFACTS.mkdir(exist_ok=True)
    lines = [f"{name}: {seconds:.1f} s" for name, (_, seconds) in results.items()]
    total = sum(seconds for _, seconds in results.values())
    (ARTIFACTS / "notebooks.log").write_text("\n".join([*lines, f"total: {total:.1f} s", ""]), encoding="utf-8")
    print("\n".join(lines), f"\ntotal: {total:.1f} s")
    return results


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_every_notebook_executes_without_error(executed: dict[str, tuple[object, float]]) -> None:
    assert sorted(executed) == sorted(p.name for p in NOTEBOOKS)
    for name, (nb, _) in executed.items():
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                assert output["output_type"] != "error", (name, cell.source)
                if output["output_type"] == "stream":
                    assert output["name"] == "stdout" or not output["text"].strip(), (name, output["text"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_cell_displays_as_its_equations_in_the_notebook(executed: dict[str, tuple[object, float]]) -> None:
    shown = 0
    for nb, _ in executed.values():
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source.startswith("derive.cell("):
                name = cell.source.split('"')[1]
                latex = [o["data"]["text/latex"] for o in cell.outputs if "text/latex" in o.get("data", {})]
                assert latex == [derive.cell(name)._repr_latex_()], name
                shown += 1
    assert shown >= 8  # the forward equations of rnn, gru_simple, gru, gru_torch, lstm, in both languages
