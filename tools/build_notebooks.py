"""Build notebooks/NN_name.ipynb from its jupytext twin notebooks/source/NN_name.py, executed, outputs stored.

python tools/build_notebooks.py            # every notebook
python tools/build_notebooks.py 01 04      # those whose name starts with 01 or 04
"""

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def build(source: Path) -> float:
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata.pop("jupytext", None)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    seconds = time.perf_counter() - start
    for i, cell in enumerate(nb.cells):  # stable ids, no timestamps: a rebuild only changes what changed
        cell.id = f"cell-{i:02d}"
        cell.metadata.pop("execution", None)
    nbformat.write(nb, NOTEBOOKS / f"{source.stem}.ipynb")
    return seconds


if __name__ == "__main__":
    prefixes = sys.argv[1:]
    for path in sorted((NOTEBOOKS / "source").glob("[0-9][0-9]_*.py")):
        if not prefixes or any(path.stem.startswith(p) for p in prefixes):
            print(f"{path.name}: executed in {build(path):.1f} s", flush=True)
