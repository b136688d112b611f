"""Time one slider panel as a reader feels it; imported into a notebook's kernel by widget_latency.py.

Each change is made the way the browser makes it (setting a control's value, which trains on the panel's
background thread), and three moments are recorded: the panel shows progress, its plot is first redrawn with the
new run, the run has ended (result shown).
"""

from __future__ import annotations

import statistics
import threading
import time

from helpers import widgets

CONTINUOUS = ("lr", "clip_norm", "init_scale", "weight_decay", "l2", "warmup_steps", "steps")
COMPILING = ("depth", "optimizer", "width", "activation", "batchnorm", "residual", "clip_mode")


def _change(p: widgets.Panel, name: str, value) -> dict:
    """Set control `name` as a user would; seconds until progress shows, the first redraw, the end."""
    control = p.controls[name]
    images, statuses = [], []
    redrawn = threading.Event()

    def on_image(change):
        images.append(time.perf_counter())
        redrawn.set()

    def on_status(change):
        statuses.append((time.perf_counter(), change["new"]))

    p._image.observe(on_image, names="value")
    p._status.observe(on_status, names="value")
    try:
        start = time.perf_counter()
        if control.switch is not None and not control.switch.value:
            control.switch.value = True
        else:
            control.slider.value = value
        assert p.wait(600), f"{name}: the run did not end"
        end = time.perf_counter()
    finally:
        p._image.unobserve(on_image, names="value")
        p._status.unobserve(on_status, names="value")
    progress = [t for t, text in statuses if "training" in text]
    return {
        "progress_s": (progress[0] - start) if progress else None,
        "first_redraw_s": (images[0] - start) if images else None,
        "done_s": end - start,
        "compiles": p.compiles,
    }


def _other(p: widgets.Panel, name: str, step: int):
    """A value for control `name` other than its current one, alternating so that every change is real."""
    s = p.controls[name].slider
    if hasattr(s, "options"):
        options = list(s.options)
        return options[(options.index(s.value) + 1) % len(options)]
    if isinstance(s.value, bool):
        return not s.value
    low, high, value = s.min, s.max, s.value
    if isinstance(s, widgets.w.FloatLogSlider):
        exponent = (low + high) / 2 + (0.3 if step % 2 else -0.3)
        return float(f"{10**exponent:.2g}")
    if isinstance(value, int):
        return int(min(high, max(low, value + (s.step if step % 2 else -s.step))))
    return min(high, max(low, value * (1.1 if step % 2 else 0.9)))


def time_panel(p: widgets.Panel, repeats: int = 5) -> dict:
    """First draw (a new panel like `p`), a continuous control `repeats` times, one compiling change."""
    start = time.perf_counter()
    q = widgets.panel(
        p.data,
        model=p.model,
        config=p.config,
        controls=list(p.controls),
        plot=p._plot,
        title=p.title,
        figsize=tuple(p.figure.get_size_inches()),
        seeds=p.seeds,
    )
    out = {
        "controls": list(p.controls),
        "model": str(p.model),
        "config": str(p.config),
        "seeds": list(p.seeds) if p.seeds else None,
        "first_draw_s": time.perf_counter() - start,
    }
    continuous = next((n for n in CONTINUOUS if n in q.controls), None)
    if continuous:
        rows = [_change(q, continuous, _other(q, continuous, i)) for i in range(repeats)]
        out["continuous"] = {"control": continuous, "changes": repeats, "compiles": sum(r["compiles"] for r in rows)}
        for key in ("progress_s", "first_redraw_s", "done_s"):
            values = [r[key] for r in rows if r[key] is not None]
            out["continuous"][key] = statistics.median(values) if values else None
    compiling = next((n for n in COMPILING if n in q.controls), None)
    if compiling:
        out["compiling"] = {"control": compiling, **_change(q, compiling, _other(q, compiling, 1))}
    return out
