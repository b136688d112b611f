"""Notebook hygiene: twins agree, outputs are stored, Colab cells point at the one repository URL, the reader's
cells show no test machinery, and enough of each notebook is checked.

The notebooks themselves run under nbval in `make test`, twice: on the default floating-point path and on a
second one (see the Makefile).
"""

import ast
import re
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPO_URL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
IGNORED = ("nbval-ignore-output", "nbval-skip")


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


def test_no_python_files_beside_the_notebooks():
    stray = sorted(p.name for p in (ROOT / "notebooks").glob("*.py"))
    assert not stray, f"jupytext twins live in notebooks/source/, not beside the notebooks: {stray}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_twin_agrees_with_stored_notebook(path):
    twin = path.parent / "source" / f"{path.stem}.py"
    assert twin.exists(), f"{path.name} has no jupytext twin {twin.relative_to(ROOT)}"
    source = [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in jupytext.read(twin).cells]
    stored = [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in nbformat.read(path, 4).cells]
    assert source == stored, f"{path.name} is stale: rebuild it with `make notebooks ARGS={path.stem[:2]}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_with_outputs_and_small(path):
    unexecuted = [i for i, c in enumerate(code_cells(path)) if c.execution_count is None]
    assert not unexecuted, f"code cells {unexecuted} of {path.name} are stored without outputs"
    errors = [i for i, c in enumerate(code_cells(path)) if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, f"code cells {errors} of {path.name} are stored with an error"
    assert path.stat().st_size < 3_000_000, f"{path.name} is {path.stat().st_size} bytes: lower figure dpi"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_badge_and_install_cell_use_the_repository_url(path):
    nb = nbformat.read(path, as_version=4)
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{path.name}"
    assert nb.cells[0].cell_type == "markdown" and badge in nb.cells[0].source, f"first cell lacks {badge}"
    setup = nb.cells[1].source
    assert "google.colab" in setup and f"git+{REPO_URL}" in setup, "second cell must install from the repository"
    assert len(setup.splitlines()) <= 3, f"the Colab cell of {path.name} should be a comment and one or two lines"
    urls = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", "\n".join(c.source for c in nb.cells)))
    assert urls <= {REPO_URL}, f"other repository URLs in {path.name}: {urls - {REPO_URL}}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_test_machinery_in_the_readers_cells(path):
    """nbval is steered by cell tags; the reader never sees a directive or a comment about the harness."""
    shown = [i for i, c in enumerate(nbformat.read(path, 4).cells) if re.search("nbval", c.source, re.IGNORECASE)]
    assert not shown, f"cells {shown} of {path.name} mention nbval: use the tags {IGNORED} instead"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_at_least_half_of_the_code_cells_are_checked(path):
    cells = code_cells(path)
    checked = [c for c in cells if not set(IGNORED) & set(c.metadata.get("tags", []))]
    assert len(checked) >= len(cells) / 2, f"only {len(checked)} of {len(cells)} code cells of {path.name} checked"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_assert_explains_itself(path):
    """A failing assert should say in words what was expected and what was measured, not `AssertionError:`."""
    bare = []
    for i, cell in enumerate(code_cells(path)):
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        bare += [
            f"cell {i}, line {a.lineno}"
            for a in ast.walk(ast.parse(code))
            if isinstance(a, ast.Assert) and a.msg is None
        ]
    assert not bare, f"{path.name}: asserts without a message at {bare}"
