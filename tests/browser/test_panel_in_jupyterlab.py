"""A real browser: JupyterLab runs a notebook with a slider panel, Chromium drags the lr slider; the panel shows
progress before the run ends, and the slider's readout and the plot image change. And Run All on notebook 07,
the longest, reaches its exercises. Screenshots go to test-artifacts/browser/.

The panel's notebook is written at test time into a temporary directory, so nbval never collects it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]

SOURCE = """
from helpers import widgets
from helpers.data import load_digits
from helpers.models import ModelConfig
from helpers.train import TrainConfig

# long enough (a few seconds) that the browser can see the run going
p = widgets.panel(load_digits(), model=ModelConfig(depth=3, width=32), config=TrainConfig(steps=6000, chunk_steps=200),
                  controls=["lr"], title="browser test")
p
"""
TIMEOUT_MS = 180_000  # a cold kernel imports JAX and compiles the step


KERNEL_IDLE = (
    "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
    " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
    " return k && k.status === 'idle'; }"
)


def open_notebook(page, lab, name):
    """Open `name` in JupyterLab and wait until its kernel is idle (Run All before that can run one cell only)."""
    page.goto(lab.notebook_url(name), timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE, timeout=TIMEOUT_MS)


def test_dragging_a_slider_shows_progress_then_reruns_and_redraws(lab, browser, artifacts):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SOURCE.strip())]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab.root / "panel.ipynb")

    page = browser.new_page(viewport={"width": 1300, "height": 1100})
    try:
        open_notebook(page, lab, "panel.ipynb")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

        image = page.locator(".jp-OutputArea-output img").first
        image.wait_for(state="visible", timeout=TIMEOUT_MS)
        readout = page.locator(".widget-slider .widget-readout").first
        config = page.locator(".widget-html code").nth(1)  # the TrainConfig string of the current run
        page.wait_for_function("() => document.querySelectorAll('.widget-html code').length >= 2", timeout=TIMEOUT_MS)
        page.wait_for_timeout(500)  # let the first image paint
        before = {"readout": readout.inner_text(), "config": config.inner_text(), "src": image.get_attribute("src")}
        before_png = image.screenshot()
        page.screenshot(path=str(artifacts / "before.png"), full_page=True)
        assert "lr=0.05" in before["config"], before

        handle = page.locator(".widget-slider .noUi-handle, .widget-slider .ui-slider-handle").first
        box = handle.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 70, y, steps=10)
        page.mouse.up()  # continuous_update=False: the change is sent on release

        # the panel says it is training, and counts steps, before the run ends
        status = "() => [...document.querySelectorAll('.widget-html')].map(e => e.innerText).join(' | ')"
        page.wait_for_function(f"() => ({status})().includes('training\u2026 step')", timeout=10_000)
        page.wait_for_function(f"() => /step [1-9][0-9]* \\/ 6000/.test(({status})())", timeout=TIMEOUT_MS)
        during = page.evaluate(status)
        page.screenshot(path=str(artifacts / "during.png"), full_page=True)
        page.wait_for_function(f"() => ({status})().includes('6000 steps, final loss')", timeout=TIMEOUT_MS)

        page.wait_for_function(
            "before => document.querySelectorAll('.widget-html code')[1].innerText !== before",
            arg=before["config"],
            timeout=TIMEOUT_MS,
        )
        page.wait_for_function(
            "before => document.querySelector('.jp-OutputArea-output img').getAttribute('src') !== before",
            arg=before["src"],
            timeout=60_000,
        )
        page.wait_for_timeout(500)
        after = {"readout": readout.inner_text(), "config": config.inner_text(), "src": image.get_attribute("src")}
        after_png = image.screenshot()
        page.screenshot(path=str(artifacts / "after.png"), full_page=True)

        assert "training" in during and "final loss" not in during, during
        assert after["readout"] != before["readout"], (before, after)
        assert after["config"] != before["config"] and "lr=" in after["config"], (before, after)
        assert float(after["readout"]) > float(before["readout"]), "dragged right: a larger lr"
        assert after_png != before_png, "the plot image did not change"
        (artifacts / "plot_before.png").write_bytes(before_png)
        (artifacts / "plot_after.png").write_bytes(after_png)
    finally:
        page.screenshot(path=str(artifacts / "last.png"), full_page=True)
        page.close()


def test_run_all_on_07_reaches_the_exercises(lab, browser, artifacts):
    """The longest notebook, run as a reader runs it: every cell, no error, down to the exercise checkers."""
    name = "07_stabilized_cnn.ipynb"
    shutil.copy(ROOT / "notebooks" / name, lab.root / name)
    page = browser.new_page(viewport={"width": 1300, "height": 1100})
    try:
        open_notebook(page, lab, name)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        # the first exercise's checker answers an unanswered exercise
        outputs = "[...document.querySelectorAll('.jp-OutputArea-output')]"
        page.wait_for_function(f"() => {outputs}.some(e => e.innerText.includes('Not answered'))", timeout=300_000)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        texts = [errors.nth(i).inner_text() for i in range(errors.count())]
        assert not [t for t in texts if "Error" in t], texts
        page.screenshot(path=str(artifacts / "07_exercises.png"), full_page=False)
    finally:
        page.screenshot(path=str(artifacts / "07_last.png"), full_page=False)
        page.close()
