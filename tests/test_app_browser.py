"""The app in a real browser: `workbench app` serves it (streamlit run, headless, on a free port, from a temporary
directory), headless Chromium (Debian's /usr/bin/chromium driven by playwright) opens the fast-weights page, moves
the position slider, checks that the heatmap is redrawn for the new position and times how long an interaction
takes to re-render on the bundled checkpoint; then it opens every page, checks what each draws (the markers of
keys, values and queries, the slider's position on the curves, the attention colour bar) and writes a full-page
screenshot of each to $WORKBENCH_SCREENSHOT_DIR (default tests/.screenshots/, ignored by git) for review.

Skips only when /usr/bin/chromium or the playwright package is missing (scripts/test.sh, which CI runs, installs Chromium
or warns that this test will be skipped; setup.sh installs playwright).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import pytest

from serving import free_port, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SCREENSHOTS = Path(os.environ.get("WORKBENCH_SCREENSHOT_DIR") or Path(__file__).parent / ".screenshots")
PAGES = {"": 1, "attention": 4, "fast_weights": 5, "recall_probe": 1, "editing": 1, "outliers": 4, "kfac": 1,
         "steering": 1,
         "information_flow": 4, "dictionaries": 2}  # plots

pytestmark = pytest.mark.integration

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'")

FIRST_PLOT = "document.querySelectorAll('.js-plotly-plot')"
SETTLED = f"""(pos) => {{
    const plots = {FIRST_PLOT};
    const app = document.querySelector('[data-testid="stApp"]');
    return plots.length >= 2 && plots[0].layout.title.text.includes('pos ' + pos)
        && plots[1].layout.title.text.includes('pos ' + pos)
        && app && app.getAttribute('data-test-script-state') === 'notRunning';
}}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    command = [sys.executable, "-m", "workbench.cli", "app", "--port", str(port), "--address", "127.0.0.1", "--headless"]
    with serving(command, port, tmp_path_factory.mktemp("streamlit")) as url:
        yield url


def plot_state(page) -> dict:
    return page.evaluate(f"() => {{ const d = {FIRST_PLOT}[0]; return {{title: d.layout.title.text, "
                         "z: JSON.stringify(d.data[0].z)}; }")


def test_slider_redraws_the_fast_weight_heatmap_in_under_a_second(server, tmp_path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server + "/fast_weights")
            page.wait_for_function(SETTLED, arg=12, timeout=120_000)  # first load: torch import, checkpoint
            start = plot_state(page)
            slider = page.locator('[data-testid="stSlider"] input[type="range"]')
            assert slider.get_attribute("value") == "12" and slider.get_attribute("max") == "47"

            times = []
            for pos in range(13, 19):  # keyboard steps, each timed to the fully re-rendered page
                slider.focus()
                t0 = time.perf_counter()
                page.keyboard.press("ArrowRight")
                page.wait_for_function(SETTLED, arg=pos, timeout=30_000, polling=10)
                times.append(time.perf_counter() - t0)
            moved = plot_state(page)
            assert "pos 18" in moved["title"] and moved["z"] != start["z"]  # a new matrix, not just a new title

            track = page.locator('[data-testid="stSlider"] [role="group"] > div').first.bounding_box()
            page.mouse.click(track["x"] + 0.75 * track["width"], track["y"] + track["height"] / 2)  # drag-free jump
            target = slider.get_attribute("value")
            page.wait_for_function(SETTLED, arg=int(target), timeout=30_000)
            assert int(target) > 30 and plot_state(page)["z"] not in (start["z"], moved["z"])

            shot = tmp_path / "fast_weights_slider.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, SCREENSHOTS / shot.name)
        finally:
            browser.close()
    # the first step may still warm caches; the median of the rest is the re-render time
    median = statistics.median(times[1:])
    print(f"slider re-render times (s): {[round(t, 3) for t in times]}, median {median:.3f}")
    assert median < 1.0, f"re-rendering after a slider move took {median:.2f} s (median); times {times}"


PAGE_DONE = """(n) => {
    const app = document.querySelector('[data-testid="stApp"]');
    return document.querySelectorAll('.js-plotly-plot .main-svg').length >= n
        && app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stSpinner"]');
}"""


SUBSTITUTION_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].some(
    d => d.layout && d.layout.title && String(d.layout.title.text).includes('Substitution: the firing atom'))"""


def legend(page) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .legendtext')].map(e => e.textContent)")


def test_every_page_draws_and_is_saved_as_a_screenshot(server):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # tall: Streamlit scrolls inside its main block, so a full-page picture is only as tall as the window
            page = browser.new_page(viewport={"width": 1400, "height": 3600})
            for name, n_plots in PAGES.items():
                page.goto(f"{server}/{name}")
                page.wait_for_function(PAGE_DONE, arg=n_plots, timeout=180_000)
                page.wait_for_timeout(500)  # let plotly finish drawing before the picture
                assert not page.locator('[data-testid="stException"]').count(), name
                assert not page.locator('[data-testid="stAlertContentError"]').count(), name
                shot = SCREENSHOTS / f"{name or 'overview'}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 20_000, name
                text = page.locator('[data-testid="stMain"]').inner_text()
                if name == "":  # the task's positions are marked on the p(next token) chart
                    assert {"key", "value", "query ★ (scored)"} <= set(legend(page))
                    assert "Recall accuracy on the task's 6 queries (★ rows)" in text
                if name == "attention":
                    assert "red is a positive weight" in text
                    bars = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .cbtitle')]"
                                         ".map(e => e.textContent)")
                    assert "weight (red +, blue −)" in bars
                if name == "fast_weights":  # the slider's position on every chart along the sequence
                    marks = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .annotation-text')]"
                                          ".map(e => e.textContent)")
                    assert marks.count("t = 12") == 3
                if name == "recall_probe":
                    assert "opened on layer 0, where fidelity beats its control the most" in text
                    assert "head 0 control" in legend(page)
                if name == "kfac":
                    assert "recites none of" in text
                if name == "steering":  # residual and state steering side by side
                    assert "Top next token (residual)" in text and "Top next token (state)" in text
                if name == "information_flow":  # the patching heatmap and the chosen cell's heads
                    assert "Metric on the clean input" in text and "each head patched alone" in text
                if name == "dictionaries":  # a WriteSAE trained on the task's batches; then its substitution figure
                    assert "Explained variance" in text and "Where an atom fires" in text
                    page.get_by_text("Run the substitution test").click()
                    # wait for the figure itself: the page's two plots already pass PAGE_DONE before the rerun starts
                    page.wait_for_function(SUBSTITUTION_DRAWN, timeout=180_000)
                    page.wait_for_function(PAGE_DONE, arg=3, timeout=180_000)
                    page.wait_for_timeout(500)
                    assert not page.locator('[data-testid="stException"]').count(), name
                    assert not page.locator('[data-testid="stAlertContentError"]').count(), name
                    titles = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')]"
                                           ".map(d => String(d.layout.title.text))")
                    assert any("Substitution: the firing atom" in t for t in titles), titles
                    page.screenshot(path=str(SCREENSHOTS / "dictionaries-substitution.png"), full_page=True)
        finally:
            browser.close()
    print(f"screenshots of every page in {SCREENSHOTS}")


def test_the_lenses_expander_draws_the_logit_lens_then_the_tuned_lens(server):
    """Overview page: opening the Lenses expander shows the logit lens by layer; switching on "Train a tuned lens"
    trains one on the task's batches and draws it beside the logit lens."""
    lens_traces = ("() => [...document.querySelectorAll('.js-plotly-plot')].filter(d => d.layout && d.layout.title"
                   " && String(d.layout.title.text).includes('by layer')).map(d => d.data.map(t => t.name))")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3600})
            page.goto(server)
            page.wait_for_function(PAGE_DONE, arg=1, timeout=180_000)
            page.get_by_text("Lenses: what each layer would predict").click()
            page.wait_for_function(f"() => ({lens_traces})().length === 1", timeout=60_000)
            assert page.evaluate(lens_traces) == [["logit lens"]]
            page.get_by_text("Train a tuned lens").click()
            page.wait_for_function(f"() => ({lens_traces})().some(names => names.includes('tuned lens'))",
                                   timeout=180_000)
            page.wait_for_function(PAGE_DONE, arg=2, timeout=180_000)
            assert page.evaluate(lens_traces) == [["logit lens", "tuned lens"]]
            assert {"logit lens", "tuned lens"} <= set(legend(page))
            assert not page.locator('[data-testid="stException"]').count()
            assert not page.locator('[data-testid="stAlertContentError"]').count()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "overview-lenses.png"), full_page=True)
        finally:
            browser.close()
