"""The exercises of the pages: at least three per cell page and on the
gradients page, in both languages, each followed by its folded answer; and
every answer's code, a ``pycon`` block, runs as a doctest, so the numbers a
page prints are the ones the code gives (a wrong number fails here)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXERCISE_PAGES = ("rnn", "gru-simple", "gru", "lstm", "gradients")
LANGS = {"en": "{}.md", "fr": "{}.fr.md"}
QUESTION = re.compile(r'^\?\?\? question "(?P<title>[^"]+)"$')
ANSWER = re.compile(r'^\?\?\? success "(?P<title>[^"]+)"$')
PYCON_OPEN = re.compile(r"^(?P<indent>[ \t]*)```pycon\s*$")


def pycon_blocks(path: Path) -> list[tuple[int, str]]:
    """Each ``pycon`` block of a page: (line of its first statement, its text dedented)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        opening = PYCON_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, body, i = opening["indent"], [], i + 1
        start = i + 1
        while lines[i].strip() != "```":
            body.append(lines[i][len(indent):])
            i += 1
        blocks.append((start, "\n".join(body) + "\n"))
        i += 1
    return blocks


def exercises(path: Path) -> list[tuple[str, bool]]:
    """(question title, whether an answer block follows it) for each question."""
    lines = [l for l in path.read_text(encoding="utf-8").split("\n")]
    found = []
    for n, line in enumerate(lines):
        match = QUESTION.match(line)
        if match:
            following = next((l for l in lines[n + 1 :] if l and not l.startswith("    ")), "")
            found.append((match["title"], bool(ANSWER.match(following))))
    return found


ALL_PYCON = [
    pytest.param(path, line, text, id=f"{path.name}:{line}")
    for path in sorted(DOCS.glob("*.md"))
    for line, text in pycon_blocks(path)
]


@pytest.mark.parametrize("page", EXERCISE_PAGES)
@pytest.mark.parametrize("lang", LANGS)
def test_at_least_three_exercises_each_with_its_answer(page: str, lang: str) -> None:
    found = exercises(DOCS / LANGS[lang].format(page))
    assert len(found) >= 3, found
    assert all(answered for _, answered in found), found
    # both languages ask the same questions, with the same answer code
    other = DOCS / LANGS["fr" if lang == "en" else "en"].format(page)
    assert len(exercises(other)) == len(found)
    assert len(pycon_blocks(other)) == len(pycon_blocks(DOCS / LANGS[lang].format(page))) >= 3


def test_every_answer_block_is_found() -> None:
    assert len(ALL_PYCON) >= 2 * 15  # three numeric answers or more on each of the five pages, twice


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("path", "line", "text"), ALL_PYCON)
def test_answer_prints_what_the_page_says(path: Path, line: int, text: str) -> None:
    test = doctest.DocTestParser().get_doctest(text, {}, f"{path.name}:{line}", str(path), line - 1)
    assert test.examples, f"{path.name}:{line}: a pycon block without a statement"
    assert any(example.want for example in test.examples), f"{path.name}:{line}: the answer prints nothing"
    failures: list[str] = []

    class Runner(doctest.DocTestRunner):
        def report_failure(self, out, test, example, got):  # noqa: ANN001, ANN202
            failures.append(f"{path.name}:{line + example.lineno}: {example.source.strip()}\n  page says {example.want!r}\n  code gives {got!r}")

        def report_unexpected_exception(self, out, test, example, exc_info):  # noqa: ANN001, ANN202
            failures.append(f"{path.name}:{line + example.lineno}: {example.source.strip()} raised {exc_info[1]!r}")

    Runner(verbose=False).run(test, out=lambda _: None)
    assert not failures, "\n".join(failures)


def test_answers_fold_out_in_the_built_site(built_site: Path) -> None:
    for page in EXERCISE_PAGES:
        for prefix in ("", "fr/"):
            html = (built_site / prefix / page / "index.html").read_text(encoding="utf-8")
            questions = html.count('<details class="question">')
            answers = html.count('<details class="success">')
            assert questions >= 3 and answers == questions, (prefix + page, questions, answers)
            assert "&gt;&gt;&gt;" in html  # the answer's code, prompts and outputs, is on the page


def test_pages_offer_their_notebook_for_download(built_site: Path) -> None:
    for page in ("rnn", "gru-simple", "gru", "lstm", "gradients", "vanishing", "experiments"):
        for prefix, lang in (("", "en"), ("fr/", "fr")):
            html = (built_site / prefix / page / "index.html").read_text(encoding="utf-8")
            link = re.search(rf'<a download="{page}\.{lang}\.ipynb" href="(?P<href>[^"]+)"', html)
            assert link, (prefix + page, "no download link")
            target = (built_site / prefix / page / link["href"]).resolve()
            committed = DOCS / "notebooks" / f"{page}.{lang}.ipynb"
            assert target.read_bytes() == committed.read_bytes(), (prefix + page, link["href"])
            text = re.sub(r"<[^>]+>", "", html)  # the commands are highlighted word by word
            assert 'pip install -e &quot;.[notebooks]&quot;' in text
            assert f"jupyter lab docs/notebooks/{page}.{lang}.ipynb" in text
