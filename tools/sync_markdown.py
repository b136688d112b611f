"""Copy the markdown cells of jupytext twins into their stored notebooks, without executing anything.

python tools/sync_markdown.py 04     # after editing prose only: the code cells and their outputs stay as stored

Refuses when a code cell differs: then the notebook must be re-executed (tools/build_notebooks.py).
"""

import sys
from pathlib import Path

import jupytext
import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def sync(source: Path) -> int:
    twin = jupytext.read(source).cells
    path = NOTEBOOKS / f"{source.stem}.ipynb"
    stored = nbformat.read(path, as_version=4)
    if [c.cell_type for c in twin] != [c.cell_type for c in stored.cells]:
        raise SystemExit(f"{path.name}: cells were added or removed; rebuild it with tools/build_notebooks.py")
    changed = 0
    for new, old in zip(twin, stored.cells, strict=True):
        if new.cell_type == "code" and new.source.strip() != old.source.strip():
            raise SystemExit(f"{path.name}: a code cell changed; rebuild it with tools/build_notebooks.py")
        if new.cell_type == "markdown" and new.source != old.source:
            old.source, changed = new.source, changed + 1
    nbformat.write(stored, path)
    return changed


if __name__ == "__main__":
    for path in sorted((NOTEBOOKS / "source").glob("[0-9][0-9]_*.py")):
        if any(path.stem.startswith(p) for p in sys.argv[1:]):
            print(f"{path.name}: {sync(path)} markdown cells updated")
