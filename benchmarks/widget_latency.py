"""Slider latency: time from a value change (`Panel.set`) to the redrawn figure, per control.

    .venv/bin/python benchmarks/widget_latency.py            # writes benchmarks/widget_latency.json

The panel trains the default MLP (depth 8, width 64) for 100 steps on the digits and draws the dashboard.
A continuous control (lr, clip_norm, l2, weight_decay, init_scale, warmup_steps) must re-run and redraw in
under 0.5 s without compiling anything; a depth the panel has not seen yet compiles once and must take
under 3 s. Each row is the median of several changes; `compiles` counts XLA compilations over all of them.
Wall-clock seconds depend on what else runs on the machine; `cpu s` (this process's CPU time, all threads)
is about what a change costs on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import platform
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


def main() -> None:
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
    result = {
        "command": "python benchmarks/widget_latency.py",
        "what": "seconds from Panel.set(control=value) to the redrawn dashboard PNG (training + drawing)",
        "model": str(MODEL),
        "config": str(CONFIG),
        "repeats": REPEATS,
        "rows": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "matplotlib": matplotlib.__version__,
        },
    }
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}  (load average {load_before[0]:.1f} -> {load_after[0]:.1f})")


if __name__ == "__main__":
    main()
