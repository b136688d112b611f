"""The website's copies of the notebooks (docs/site_notebooks.py): a panel is its stored picture or nothing, with a
note on running it live; no widget state, no image from another host. The build itself: tests/browser/test_site.py.
"""

import copy
import importlib.util
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("site_notebooks", ROOT / "docs" / "site_notebooks.py")
site_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site_notebooks)

REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
STORED = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
COLAB = "https://colab.research.google.com/github/o/r/blob/main/notebooks/01_x.ipynb"


def _panel_notebook(with_still: bool) -> dict:
    data = {WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0}, "text/plain": "Panel(lr)"}
    if with_still:
        data["image/png"] = "iVBORw0KGgo="
    badge = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](" + COLAB + ")"
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}},
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": f"# 01 · x\n\n{badge}"},
            {
                "cell_type": "code",
                "id": "b",
                "metadata": {},
                "outputs": [],
                "source": 'if "google.colab" in sys.modules:',
            },
            {
                "cell_type": "code",
                "id": "c",
                "metadata": {},
                "execution_count": 3,
                "source": "explore = panel(...)\nexplore",
                "outputs": [{"output_type": "execute_result", "execution_count": 3, "metadata": {}, "data": data}],
            },
        ],
    }


def test_a_panel_with_a_still_shows_only_the_still_after_a_note_on_running_it_live():
    nb = _panel_notebook(with_still=True)
    original = copy.deepcopy(nb)
    site = site_notebooks.for_site(nb, COLAB)
    assert nb == original, "the stored notebook must not change"
    assert "widgets" not in site["metadata"], "widget state would make the page load a widget manager"
    note, panel = site["cells"][2], site["cells"][3]
    assert note["cell_type"] == "markdown" and "picture it stored" in note["source"]
    assert f"[Colab]({COLAB})" in note["source"] and "`make lab`" in note["source"]
    assert [o["data"] for o in panel["outputs"]] == [{"image/png": "iVBORw0KGgo="}]


def test_a_panel_without_a_still_shows_nothing_and_says_so():
    site = site_notebooks.for_site(_panel_notebook(with_still=False), COLAB)
    note, panel = site["cells"][2], site["cells"][3]
    assert "cannot show it" in note["source"] and "`make lab`" in note["source"]
    assert panel["outputs"] == []


def test_the_badge_is_a_local_copy_and_the_setup_cell_is_collapsed():
    site = site_notebooks.for_site(_panel_notebook(with_still=True), COLAB)
    title = site["cells"][0]["source"]
    assert "](../images/colab-badge.svg)" in title and f"]({COLAB})" in title
    assert (ROOT / "docs" / "images" / "colab-badge.svg").is_file()
    assert site["cells"][1]["metadata"]["tags"] == ["hide-input"]


def test_an_image_from_another_host_stops_the_build():
    nb = _panel_notebook(with_still=True)
    nb["cells"][0]["source"] += "\n\n![a plot](https://example.org/plot.png)"
    with pytest.raises(ValueError, match="another host"):
        site_notebooks.for_site(nb, COLAB, "01_x.ipynb")


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_every_stored_notebook_becomes_a_page_without_widgets(path):
    nb = json.loads(path.read_text())
    colab = site_notebooks.colab_url(REPOSITORY, path.name)
    assert colab in "".join(nb["cells"][0]["source"]), "the note's Colab link must be the badge's"
    panels = sum(WIDGET_VIEW in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
    site = site_notebooks.for_site(nb, colab, path.name)
    text = json.dumps(site)
    assert WIDGET_VIEW not in text and "widget-state" not in text
    assert len(re.findall(r"to move its sliders", text)) == panels >= 1
