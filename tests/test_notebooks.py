"""Notebook hygiene: twins agree, stored outputs exist, Colab cells point at the one repository URL, and a
fresh run reproduces every checked output (nbval, run by `make test`, is the other run)."""

import configparser
import re
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPO_URL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
IGNORE_MARKERS = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION")


def _sanitizers():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "tests" / "sanitize.cfg")
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def _checked_outputs(cell) -> str:
    """The text nbval compares for a cell (images and widget views are not compared), sanitized.

    Consecutive stream outputs are merged, as nbval does: how a kernel splits a stream depends on timing.
    """
    texts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            if texts and texts[-1].startswith(f"{out['name']}:"):
                texts[-1] += out["text"]
            else:
                texts.append(f"{out['name']}:{out['text']}")
        elif out["output_type"] in ("execute_result", "display_data"):
            data = out.get("data", {})
            skip = ("image/", "application/vnd.jupyter.widget")
            texts.extend(f"{k}:{v}" for k, v in sorted(data.items()) if not k.startswith(skip))
        elif out["output_type"] == "error":
            texts.append(f"error:{out['ename']}")
    text = "\n".join(texts)
    for regex, replace in _sanitizers():
        text = regex.sub(replace, text)
    return text


def _is_checked(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.cell_type == "code" and not any(
        m in cell.source or m.lower().replace("_", "-") in tags for m in IGNORE_MARKERS
    )


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_twin_agrees_with_stored_notebook(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{path.name} has no jupytext twin {twin.name}"
    source = [(c.cell_type, c.source.strip()) for c in jupytext.read(twin).cells]
    stored = [(c.cell_type, c.source.strip()) for c in nbformat.read(path, as_version=4).cells]
    assert source == stored, f"{path.name} is stale: rebuild it with `make notebooks ARGS={path.stem[:2]}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_with_outputs_and_small(path):
    nb = nbformat.read(path, as_version=4)
    unexecuted = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None]
    assert not unexecuted, f"cells {unexecuted} of {path.name} are stored without outputs"
    assert path.stat().st_size < 3_000_000, f"{path.name} is {path.stat().st_size} bytes: lower figure dpi"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_badge_and_install_cell_use_the_repository_url(path):
    nb = nbformat.read(path, as_version=4)
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{path.name}"
    assert nb.cells[0].cell_type == "markdown" and badge in nb.cells[0].source, f"first cell lacks {badge}"
    setup = nb.cells[1].source
    assert "google.colab" in setup and f"git+{REPO_URL}" in setup, "second cell must install from the repository"
    urls = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", "\n".join(c.source for c in nb.cells)))
    assert urls <= {REPO_URL}, f"other repository URLs in {path.name}: {urls - {REPO_URL}}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_fresh_run_reproduces_checked_outputs(path):
    stored = nbformat.read(path, as_version=4)
    fresh = nbformat.read(path, as_version=4)
    NotebookClient(
        fresh, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    for i, (old, new) in enumerate(zip(stored.cells, fresh.cells, strict=True)):
        if _is_checked(old):
            assert _checked_outputs(new) == _checked_outputs(old), f"{path.name} cell {i} changed:\n{old.source[:200]}"
