"""Slider latency, two ways: per control on a reference panel, and on every panel of every notebook.

    .venv/bin/python benchmarks/widget_latency.py            # writes benchmarks/widget_latency.json
    .venv/bin/python benchmarks/widget_latency.py --only reference   # or: --only notebooks [02 04 ...]

Reference panel: the default MLP (depth 8, width 64), 100 steps on the digits, the dashboard. Time from
`Panel.set(control=value)` to the redrawn dashboard PNG, per control. A continuous control (lr, clip_norm, l2,
weight_decay, init_scale, warmup_steps) must re-run and redraw in under 0.5 s without compiling anything; a depth
the panel has not seen yet compiles once and must take under 3 s.

Notebook panels: each notebook runs in a kernel up to its panels (nbclient), and after each panel a cell times
it as a reader feels it (benchmarks/panel_timing.py): its first draw; a continuous control moved as the browser
moves it, five times: when progress shows (target 0.3 s), when the plot is first redrawn with the new run (target
1 s), when the run has ended (target 1 s for MLP panels; CNN panels: as fast as their step allows); and one
change that needs a new program. Wall-clock seconds depend on what else runs on the machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import matplotlib  # noqa: E402

from helpers import widgets  # noqa: E402
from helpers.data import load_digits  # noqa: E402
from helpers.models import ModelConfig  # noqa: E402
from helpers.train import TrainConfig  # noqa: E402

REPEATS = 7
TARGETS_S = {"continuous": 0.5, "compile": 3.0}
# Two values per control, visited in turn: every change is a real change.
CONTINUOUS = {
    "lr": (0.1, 0.02),
    "clip_norm": (0.5, 2.0),
    "l2": (1e-3, 1e-4),
    "weight_decay": (1e-3, 1e-4),
    "init_scale": (1.2, 0.9),
    "warmup_steps": (20, 0),
}
NEW_DEPTHS = (6, 10, 12)  # each compiles once
MODEL = ModelConfig(depth=8, width=64)
CONFIG = TrainConfig(steps=100, lr=0.05, clip_norm=1.0)  # clipping on: moving clip_norm is then pure data


def measure(p: widgets.Panel, name: str, values) -> dict:
    """Median over `values` of set(name=value) -> redrawn PNG, with the split into training and drawing."""
    total, cpu, train, draw, compiles = [], [], [], [], 0
    for value in values:
        start, start_cpu = time.perf_counter(), time.process_time()
        p.set(**{name: value})
        total.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        train.append(p.seconds["train"])
        draw.append(p.seconds["draw"])
        compiles += p.compiles
    return {
        "control": name,
        "changes": len(values),
        "median_s": statistics.median(total),
        "min_s": min(total),
        "max_s": max(total),
        "median_cpu_s": statistics.median(cpu),
        "median_train_s": statistics.median(train),
        "median_draw_s": statistics.median(draw),
        "compiles": compiles,
    }


def reference() -> dict:
    load_before = os.getloadavg()
    data = load_digits()
    start = time.perf_counter()
    controls = [*CONTINUOUS, "depth"]
    p = widgets.panel(data, model=MODEL, config=CONFIG, controls=controls, title="latency")
    first = {"control": "(first run)", "changes": 1, "median_s": time.perf_counter() - start, "compiles": p.compiles}
    rows = [first]
    for name, pair in CONTINUOUS.items():
        rows.append(measure(p, name, [pair[i % 2] for i in range(REPEATS)]))
    rows.append(measure(p, "depth", list(NEW_DEPTHS)) | {"control": "depth (new value: compiles)"})
    rows.append(measure(p, "depth", [8, 6, 8, 10, 8]) | {"control": "depth (seen before)"})
    load_after = os.getloadavg()

    for row in rows:
        target = TARGETS_S["compile"] if row["control"].startswith("depth (new") else TARGETS_S["continuous"]
        row["target_s"] = None if row["control"] == "(first run)" else target
        row["ok"] = None if row["target_s"] is None else row["median_s"] < target
        row["ok_cpu"] = None if row["target_s"] is None else row["median_cpu_s"] < target
    print(f"{'control':<30} {'changes':>7} {'median s':>9} {'cpu s':>6} {'train s':>8} {'draw s':>7} {'compiles':>8}")
    for r in rows:
        cpu = f"{r['median_cpu_s']:6.3f}" if "median_cpu_s" in r else " " * 6
        train = f"{r['median_train_s']:8.3f}" if "median_train_s" in r else " " * 8
        draw = f"{r['median_draw_s']:7.3f}" if "median_draw_s" in r else " " * 7
        verdict = ""
        if r["target_s"] is not None:
            wall, cpu_ok = ("ok" if r[k] else "MISSED" for k in ("ok", "ok_cpu"))
            verdict = f"  target {r['target_s']:g} s: wall {wall}, cpu {cpu_ok}"
        head = f"{r['control']:<30} {r['changes']:>7} {r['median_s']:9.3f}"
        print(f"{head} {cpu} {train} {draw} {r['compiles']:>8}{verdict}")
    return {
        "what": "seconds from Panel.set(control=value) to the redrawn dashboard PNG (training + drawing)",
        "model": str(MODEL),
        "config": str(CONFIG),
        "repeats": REPEATS,
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


PANEL = re.compile(r"^(\w+)\s*=\s*(?:widgets\.)?(?:panel|Panel)\(", re.MULTILINE)
NOTEBOOK_TARGETS_S = {"progress_s": 0.3, "first_redraw_s": 1.0, "done_s_mlp": 1.0}


def notebook_panels(prefixes: list[str]) -> list[dict]:
    """Every panel of every notebook (or of those whose name starts with one of `prefixes`), timed in the
    notebook's own kernel after the cells before it ran."""
    import nbformat
    from nbclient import NotebookClient

    rows = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if prefixes and not any(path.stem.startswith(p) for p in prefixes):
            continue
        nb = nbformat.read(path, as_version=4)
        cells, last = (
            [],
            max((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and PANEL.search(c.source)), default=None),
        )
        if last is None:
            continue
        for cell in nb.cells[: last + 1]:
            if cell.cell_type != "code":
                continue
            cells.append(nbformat.v4.new_code_cell(cell.source))
            for name in PANEL.findall(cell.source):
                cells.append(
                    nbformat.v4.new_code_cell(
                        "import json as _json, sys as _sys\n"
                        f"_sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
                        "from panel_timing import time_panel as _time_panel\n"
                        f"print('PANEL_TIMING', _json.dumps({{'notebook': {path.stem!r}, 'panel': {name!r}, "
                        f"**_time_panel({name})}}))"
                    )
                )
        run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
        start = time.perf_counter()
        NotebookClient(
            run, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        found = [
            json.loads(line.removeprefix("PANEL_TIMING "))
            for cell in run.cells
            for out in cell.get("outputs", [])
            if out.get("output_type") == "stream"
            for line in out.get("text", "").splitlines()
            if line.startswith("PANEL_TIMING ")
        ]
        print(f"{path.stem}: {len(found)} panel(s), {time.perf_counter() - start:.0f} s", flush=True)
        rows.extend(found)
    print(f"\n{'notebook / panel':<36} {'first draw':>10} {'progress':>9} {'redraw':>7} {'done':>6} {'compiling':>10}")
    for r in rows:
        c, k = r.get("continuous", {}), r.get("compiling", {})
        fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"  # noqa: E731
        print(
            f"{r['notebook'] + ' / ' + r['panel']:<36} {fmt(r['first_draw_s']):>10} {fmt(c.get('progress_s')):>9} "
            f"{fmt(c.get('first_redraw_s')):>7} {fmt(c.get('done_s')):>6} {fmt(k.get('done_s')):>10}"
        )
    return rows


def main() -> None:
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    prefixes = sys.argv[sys.argv.index("--only") + 2 :] if only == "notebooks" else []
    out = Path(__file__).with_suffix(".json")
    result = json.loads(out.read_text()) if out.exists() and only else {}
    result.update(
        command="python benchmarks/widget_latency.py",
        machine={
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "matplotlib": matplotlib.__version__,
        },
        date=time.strftime("%Y-%m-%d %H:%M"),
    )
    if only in (None, "reference"):
        result["reference"] = reference()
    if only in (None, "notebooks"):
        result["notebook_targets_s"] = NOTEBOOK_TARGETS_S
        fresh = notebook_panels(prefixes)
        timed = {r["notebook"] for r in fresh}
        result["notebooks"] = sorted(
            [r for r in result.get("notebooks", []) if r["notebook"] not in timed] + fresh,
            key=lambda r: (r["notebook"], r["panel"]),
        )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
