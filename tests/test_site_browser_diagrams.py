"""The diagrams in a real browser (headless Chromium): the highlighted state
paths on the gru and lstm pages, the unrolled network on the sequences page,
and labels that stay readable on a phone (390 CSS px wide).

Screenshots of each, in both languages, go to ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser_support import ARTIFACTS

PHONE = {"width": 390, "height": 844}

# For every diagram of the page: its directive, the size in CSS px of each
# of its texts (font size times the SVG's scale on screen), the width of its
# scrolling box and of its content, and the width of the whole page.
DIAGRAMS = """() => [...document.querySelectorAll('.derive-diagram')].map(box => {
  const svg = box.querySelector('svg');
  const size = t => t.getScreenCTM().a * parseFloat(t.getAttribute('font-size'));
  const texts = [...svg.querySelectorAll('text')];
  return {
    label: box.parentElement.dataset.derive,
    texts: texts.map(size),
    names: [...svg.querySelectorAll('g.nodes > g > text:first-of-type')].map(size),
    box: box.clientWidth, content: box.scrollWidth, focusable: box.tabIndex === 0,
    page: document.scrollingElement.scrollWidth,
    onPath: [...svg.querySelectorAll('g.nodes [data-on-path]')].map(g => g.dataset.node || g.getAttribute('class')),
    highlighted: svg.querySelectorAll('g.state-path > path').length,
    title: svg.querySelector('title').textContent,
  };
})"""


def _diagrams(page, base_url: str, path: str) -> dict[str, dict]:  # noqa: ANN001 - a playwright Page
    page.goto(base_url + path, wait_until="load")
    return {d["label"]: d for d in page.evaluate(DIAGRAMS)}


def _shot(page, label: str, name: str) -> None:  # noqa: ANN001
    """The figure, cut from a full-page capture (so that the sticky header,
    drawn at the top of the page, does not cover a figure taller than the window)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator(f'.derive-figure[data-derive="{label}"]').bounding_box()
    page.screenshot(path=str(ARTIFACTS / name), full_page=True, clip=box)


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_the_memory_path_is_highlighted(base_url: str, session, name: str, lang: str) -> None:  # noqa: ANN001
    page, watch = session
    prefix = "/fr" if lang == "fr" else ""
    found = _diagrams(page, base_url, f"{prefix}/{name}/")
    plain, path = found[f"diagram {name}"], found[f"diagram {name} state-path"]
    assert plain["highlighted"] == 0 and not plain["onPath"]  # the first figure is the plain one
    # the path runs from c(t−1) through a product and a sum to c(t), and on to the next step
    assert path["highlighted"] >= 3, path
    assert {"c_prev", "c"} <= set(path["onPath"]), path["onPath"]
    assert "node mul" in path["onPath"] and "node state_out" in path["onPath"]
    assert not {"h", "Gu", "Gr", "Gi", "Go", "a_prev", "x"} & set(path["onPath"]), path["onPath"]
    words = {"en": "the path from c(t−1) to c(t)", "fr": "le chemin de c(t−1) à c(t)"}[lang]
    assert words in path["title"], path["title"]
    _shot(page, f"diagram {name} state-path", f"diagram-{name}-state-path.{lang}.png")
    assert not watch.outside and not watch.errors, (watch.outside, watch.errors)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_sequences_page_shows_the_unrolled_network(base_url: str, session, lang: str) -> None:  # noqa: ANN001
    page, watch = session
    prefix = "/fr" if lang == "fr" else ""
    found = _diagrams(page, base_url, f"{prefix}/sequences/")
    assert list(found) == ["diagram rnn unrolled"]
    figure = page.locator('.derive-figure[data-derive="diagram rnn unrolled"] svg')
    assert figure.locator("g.node.step").count() == 3
    labels = figure.locator("g.nodes text").all_text_contents()
    assert [t for t in labels if t.startswith("x(")] == ["x(1)", "x(2)", "x(3)"]
    assert "a(0)" in labels
    assert "+------+" not in page.locator("article").inner_text()  # the ASCII art is gone
    _shot(page, "diagram rnn unrolled", f"diagram-rnn-unrolled.{lang}.png")
    assert not watch.outside and not watch.errors, (watch.outside, watch.errors)


PAGES_WITH_DIAGRAMS = ["/sequences/", "/rnn/", "/gru-simple/", "/gru/", "/lstm/", "/fr/gru/", "/fr/lstm/"]


def test_diagram_labels_are_readable_on_a_phone(base_url: str, browser) -> None:  # noqa: ANN001
    """At 390 CSS px the diagrams keep their drawn size (labels 14 px,
    captions 11 px) and scroll sideways in their own box; the page itself
    does not scroll sideways."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  service_workers="block")
    try:
        page = context.new_page()
        report = []
        for path in PAGES_WITH_DIAGRAMS:
            for label, d in _diagrams(page, base_url, path).items():
                report.append(f"{path} {label}: smallest text {min(d['texts']):.1f} px, "
                              f"node names {min(d['names']):.1f} px, box {d['box']} px, content {d['content']} px")
                assert min(d["names"]) >= 13.5, report[-1]
                assert min(d["texts"]) >= 10.5, report[-1]
                assert d["page"] <= PHONE["width"], f"{path}: the page scrolls sideways ({d['page']} px)"
                assert d["focusable"], f"{path} {label}: its scrolling box cannot be reached by the keyboard"
                if d["content"] > d["box"] + 1:  # wider than the screen: it scrolls, and the box shows it
                    assert page.locator(f'.derive-figure[data-derive="{label}"] .derive-diagram').evaluate(
                        "e => getComputedStyle(e).overflowX") == "auto"
        page.goto(base_url + "/lstm/")
        _shot(page, "diagram lstm state-path", "diagram-lstm-state-path.phone.en.png")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "diagram-label-sizes.phone.txt").write_text("\n".join(report) + "\n", encoding="utf-8")
    finally:
        context.close()


def test_each_diagram_view_has_a_figure_in_the_built_pages(built_site: Path) -> None:
    """Every cell page with a diagram directive got its SVG (the directive
    label is recorded on the figure), in both languages."""
    for lang in ("", "fr/"):
        for name, views in (("gru", ("", " state-path")), ("lstm", ("", " state-path")),
                            ("sequences", (" unrolled",))):
            html = (built_site / f"{lang}{name}" / "index.html").read_text(encoding="utf-8")
            cell = "rnn" if name == "sequences" else name
            for view in views:
                assert f'data-derive="diagram {cell}{view}"' in html, (lang, name, view)
