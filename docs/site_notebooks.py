"""The website's copies of the stored notebooks: what a page without a kernel can show.

`stage` copies notebooks/NN_name.ipynb to docs/notebooks/ (git-ignored) for Sphinx, changing three things:

- a slider panel's output (a widget view) keeps only its stored picture (image/png), or nothing where it has
  none, and a note before the panel says how to run it live (Colab or `make lab`);
- the notebook's saved widget state is dropped, so no page loads a widget manager;
- the Colab setup cell, and any cell whose source JupyterLab hides, shows its source only on a click;
- badge images point to local copies in docs/images/.

Nothing is executed: the outputs are those stored by `make notebooks`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BADGES = {"https://colab.research.google.com/assets/colab-badge.svg": "../images/colab-badge.svg"}
REMOTE_IMAGE = re.compile(r"!\[[^\]]*\]\((https?:)?//|<img[^>]+src=[\"'](https?:)?//")

PANEL_NOTE = {
    True: "Below, the panel shows the picture it stored when the notebook ran; to move its sliders, open the "
    "notebook in [Colab]({colab}) or run it on your machine with `make lab`.",
    False: "The panel below needs a running notebook, so this page cannot show it; to move its sliders, open the "
    "notebook in [Colab]({colab}) or run it on your machine with `make lab`.",
}


def colab_url(repository: str, name: str) -> str:
    """The notebook's Colab address, as its badge has it (tests/test_notebooks.py checks the badges)."""
    return repository.replace("https://github.com/", "https://colab.research.google.com/github/") + (
        f"/blob/main/notebooks/{name}"
    )


def _local_badges(source: str, where: str) -> str:
    for remote, local in BADGES.items():
        source = source.replace(remote, local)
    if REMOTE_IMAGE.search(source):
        raise ValueError(f"{where}: an image from another host; add a local copy to docs/images/ and to BADGES")
    return source


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def for_site(nb: dict, colab: str, name: str = "notebook") -> dict:
    """A copy of notebook `nb` (nbformat 4 JSON) as the website shows it; `nb` is not changed."""
    nb = copy.deepcopy(nb)
    nb["metadata"].pop("widgets", None)
    cells = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            cell["source"] = _local_badges(_source(cell), f"{name}, cell {index}")
        if cell["cell_type"] == "code" and _collapsed(cell):
            tags = cell["metadata"].setdefault("tags", [])
            tags += [] if "hide-input" in tags else ["hide-input"]  # myst-nb: a "Show code cell source" toggle
        panels = [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        if panels:
            has_still = all("image/png" in o["data"] for o in panels)
            note = PANEL_NOTE[has_still].format(colab=colab)
            cells.append(
                {
                    "cell_type": "markdown",
                    "id": f"panel-note-{index}",
                    "metadata": {},
                    "source": f":::{{note}}\n{note}\n:::",
                }
            )
            cell["outputs"] = [_still(o) for o in cell["outputs"]]
            cell["outputs"] = [o for o in cell["outputs"] if o is not None]
        cells.append(cell)
    nb["cells"] = cells
    return nb


def _collapsed(cell: dict) -> bool:
    """The setup cell (it installs the package on Colab, and does nothing here) or a cell hidden in JupyterLab."""
    return "google.colab" in _source(cell) or bool(cell["metadata"].get("jupyter", {}).get("source_hidden"))


def _still(output: dict) -> dict | None:
    """A panel's output reduced to its picture (None without one); any other output unchanged."""
    data = output.get("data", {})
    if WIDGET_VIEW not in data:
        return output
    if "image/png" not in data:
        return None
    return {**output, "data": {"image/png": data["image/png"]}, "metadata": {}}


def stage(src: Path, dst: Path, repository: str) -> list[Path]:
    """Write the site's copy of every src/NN_*.ipynb into dst (only those that changed: Sphinx rebuilds less)."""
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        nb = for_site(json.loads(path.read_text()), colab_url(repository, path.name), path.name)
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        target = dst / path.name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        written.append(target)
    for stale in set(dst.glob("*.ipynb")) - set(written):  # a notebook renamed or removed in notebooks/
        stale.unlink()
    return written
