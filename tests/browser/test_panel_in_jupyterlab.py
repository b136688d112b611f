"""A real browser: JupyterLab runs a notebook with a slider panel, Chromium drags the lr slider, and both the
slider's readout and the plot image change. Screenshots go to test-artifacts/browser/.

The notebook is written at test time into a temporary directory, so nbval never collects it.
"""

from __future__ import annotations

import nbformat

SOURCE = """
from helpers import widgets
from helpers.data import load_digits
from helpers.models import ModelConfig
from helpers.train import TrainConfig

p = widgets.panel(load_digits(), model=ModelConfig(depth=3, width=32), config=TrainConfig(steps=60, chunk_steps=30),
                  controls=["lr"], title="browser test")
p
"""
TIMEOUT_MS = 180_000  # a cold kernel imports JAX and compiles the step


def test_dragging_a_slider_reruns_and_redraws(lab, browser, artifacts):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SOURCE.strip())]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab.root / "panel.ipynb")

    page = browser.new_page(viewport={"width": 1300, "height": 1100})
    try:
        page.goto(lab.notebook_url("panel.ipynb"), timeout=TIMEOUT_MS)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
            timeout=TIMEOUT_MS,
        )
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

        assert after["readout"] != before["readout"], (before, after)
        assert after["config"] != before["config"] and "lr=" in after["config"], (before, after)
        assert float(after["readout"]) > float(before["readout"]), "dragged right: a larger lr"
        assert after_png != before_png, "the plot image did not change"
        (artifacts / "plot_before.png").write_bytes(before_png)
        (artifacts / "plot_after.png").write_bytes(after_png)
    finally:
        page.screenshot(path=str(artifacts / "last.png"), full_page=True)
        page.close()
