"""The experiments page in headless Chromium: plots in both palettes, readable
on a phone, labelled, and styling nothing but themselves.

- The palette follows the reader's system setting, and the toggle switches
  it; the plot of the current palette is the one shown.
- At 390 CSS px the smallest plot text is at least 9.5 CSS px, and no plot
  is wider than the page.
- Every plot is an image with an accessible name.
- The stylesheet inside the plots leaves the rest of the page alone.

Screenshots go to test-artifacts/: the gates figure and the dark-mode page,
in both languages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from browser_support import ARTIFACTS, _Watch

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PAGES = {"en": "/experiments/", "fr": "/fr/experiments/"}

# Which plots are shown, and the smallest text each shows, in CSS px: the
# text's font size in the SVG's units times the scale the page draws it at.
PLOTS_STATE = """() => [...document.querySelectorAll('svg.derive-plot')].map(svg => {
  const box = svg.getBoundingClientRect();
  const scale = box.width / svg.viewBox.baseVal.width;
  const sizes = [...svg.querySelectorAll('text')].map(t => parseFloat(getComputedStyle(t).fontSize) * scale);
  return {
    name: svg.closest('.derive-figure').dataset.derive,
    scheme: svg.classList.contains('derive-plot-dark') ? 'dark' : 'light',
    shown: box.width > 0 && box.height > 0,
    width: box.width,
    smallestText: Math.min(...sizes),
    label: svg.getAttribute('aria-label') || '',
    role: svg.getAttribute('role'),
    title: (svg.querySelector(':scope > title') || {}).textContent || '',
  };
})"""


def _plots(page: Page) -> list[dict]:
    plots = page.evaluate(PLOTS_STATE)
    assert len(plots) >= 8, f"expected the four plots in two schemes, found {len(plots)}"
    return plots


def _shown_schemes(page: Page) -> set[str]:
    return {p["scheme"] for p in _plots(page) if p["shown"]}


def _check_no_errors(watch: _Watch) -> None:
    assert not watch.outside, f"requests outside 127.0.0.1: {sorted(set(watch.outside))[:10]}"
    assert not watch.errors, "console errors:\n" + "\n".join(watch.errors[:10])


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_palette_toggle_switches_the_plots(base_url: str, session: tuple[Page, _Watch], lang: str) -> None:
    page, watch = session
    page.emulate_media(color_scheme="light")
    page.goto(base_url + PAGES[lang], wait_until="load")
    assert page.get_attribute("body", "data-md-color-scheme") == "default"
    assert _shown_schemes(page) == {"light"}
    toggle = page.locator("form[data-md-component=palette] label:visible")
    assert toggle.count() == 1
    name = toggle.get_attribute("title") or toggle.get_attribute("aria-label")
    assert name == {"en": "Switch to dark mode", "fr": "Passer au thème sombre"}[lang]
    toggle.click()
    assert page.get_attribute("body", "data-md-color-scheme") == "slate"
    assert _shown_schemes(page) == {"dark"}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"experiments-dark.{lang}.png"), full_page=True)
    page.locator("form[data-md-component=palette] label:visible").click()
    assert _shown_schemes(page) == {"light"}
    _check_no_errors(watch)


def test_the_palette_follows_the_system_setting(browser: Browser, base_url: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark",
                                  service_workers="block")
    try:
        watch = _Watch(context)
        page = context.new_page()
        watch.attach(page)
        page.goto(base_url + PAGES["fr"], wait_until="load")
        assert page.get_attribute("body", "data-md-color-scheme") == "slate"
        assert _shown_schemes(page) == {"dark"}
        _check_no_errors(watch)
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_plots_are_labelled_images_and_style_nothing_else(
    base_url: str, session: tuple[Page, _Watch], lang: str
) -> None:
    page, watch = session
    page.goto(base_url + PAGES[lang], wait_until="load")
    names = set()
    for plot in _plots(page):
        names.add(plot["name"])
        assert plot["role"] == "img" and len(plot["label"]) > 30, plot
        assert plot["title"] == plot["label"], plot
    assert {"plot gradient-flow", "plot memory", "plot gates", "plot forget-bias"} <= names
    # matplotlib's `*{stroke-linejoin: round}` would reach the theme's icons if it were not scoped
    joins = page.evaluate("""() => [...document.querySelectorAll('.md-header svg path, .md-footer svg path')]
        .map(p => getComputedStyle(p).strokeLinejoin)""")
    assert joins and set(joins) == {"miter"}, joins
    inside = page.evaluate("getComputedStyle(document.querySelector('svg.derive-plot path')).strokeLinejoin")
    assert inside == "round"
    _check_no_errors(watch)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_plot_text_is_readable_on_a_phone(browser: Browser, base_url: str, lang: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True, service_workers="block")
    try:
        page = context.new_page()
        page.goto(base_url + PAGES[lang], wait_until="load")
        page.evaluate("document.fonts.ready")
        shown = [p for p in _plots(page) if p["shown"]]
        assert len(shown) == 4
        for plot in shown:
            assert plot["width"] <= 390 - 16, plot
            assert plot["smallestText"] >= 9.5, plot
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_screenshot_of_the_gates_figure(base_url: str, session: tuple[Page, _Watch], lang: str) -> None:
    page, watch = session
    page.goto(base_url + PAGES[lang], wait_until="load")
    figure = page.locator('.derive-figure[data-derive="plot gates"] svg.derive-plot-light')
    assert figure.count() == 1 and figure.is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    figure.screenshot(path=str(ARTIFACTS / f"gates.{lang}.png"))
    _check_no_errors(watch)
