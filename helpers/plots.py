"""Plots of a training run: a live dashboard that redraws while `train` runs, and the same plots when it is done::

    dash = Dashboard("depth 8, lr 0.05")
    history = train(model, data, config, on_chunk=dash.update)
    fig = dash.finish(history)        # the final redraw; plot_history(history) draws the same thing

Every figure is a `matplotlib.figure.Figure`, never a pyplot one, so nothing piles up in pyplot's registry
(no "more than 20 figures" warning, no figure shown twice). The dashboard is shown once with a display handle
and redrawn in place with `handle.update(fig)`: the one way that works alike in JupyterLab, Colab and headless
runs (nbclient, nbval) without ipympl. Non-finite values (NaN, Inf) are never dropped silently: they are
marked with a cross at the top edge of the axes, and a divergence step gets a labelled vertical line.
Per-layer data are ordered input -> output, like `model.layer_names()`.
"""

from __future__ import annotations

import io
import textwrap
import time
import warnings
import weakref
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from IPython import get_ipython
from IPython.display import display
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.colors import LogNorm, to_hex
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from helpers.train import History, SeedRuns

__all__ = [
    "COLORS",
    "Dashboard",
    "add_open_points",
    "compare_histories",
    "draw_dashboard",
    "figure_png",
    "plot_activation_stats",
    "plot_histograms",
    "plot_history",
    "plot_layer_histograms",
    "plot_layer_profile",
    "plot_seed_rows",
    "plot_theory_vs_measurement",
    "reference_lines",
    "series",
]

# Okabe & Ito (2008), "Color Universal Design": eight colours told apart with every common colour-vision deficiency.
_OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
# Vermillion (the colour of divergence and NaN/Inf markers) and faint yellow come last.
_SERIES_ORDER = ("blue", "orange", "green", "purple", "sky_blue", "black", "vermillion", "yellow")


def series(n: int) -> list[str]:
    """`n` distinct colours: Okabe-Ito for n <= 8, else evenly spaced along the colour-blind-safe 'cividis' map."""
    if n <= len(_SERIES_ORDER):
        return [_OKABE_ITO[name] for name in _SERIES_ORDER[:n]]
    return [to_hex(c) for c in colormaps["cividis"](np.linspace(0, 1, n))]


class _Palette(dict):
    """A dict of colours by role; `COLORS.series(n)` is `series(n)`."""

    series = staticmethod(series)


#: The same colour for the same thing in every notebook.
COLORS = _Palette(
    loss=_OKABE_ITO["blue"],
    grad_norm=_OKABE_ITO["orange"],
    clip=_OKABE_ITO["black"],  # the clip_norm threshold line
    clipped=_OKABE_ITO["purple"],  # steps where clipping changed the gradient
    theory=_OKABE_ITO["black"],  # predicted values (dashed)
    measured=_OKABE_ITO["blue"],
    diverged=_OKABE_ITO["vermillion"],
    nonfinite=_OKABE_ITO["vermillion"],  # NaN / Inf markers and heatmap cells
    band=_OKABE_ITO["green"],  # the reference band of the update/parameter ratio
    lr=_OKABE_ITO["sky_blue"],
)
#: Layers are coloured along a sequential map, input (dark) -> output (light).
LAYER_CMAP = "viridis"
HEATMAP_CMAP = "cividis"
#: Rule of thumb (e.g. Karpathy's CS231n notes): per-step ||update|| / ||W|| of about 1e-3 is healthy.
RATIO_BAND = (10**-3.5, 10**-2.5)
LAYER_AXIS = "layer (input -> output)"
DPI = 90
DASHBOARD_SIZE = (10.0, 6.4)
#: Runs with at least this many steps get a tqdm progress bar in `Dashboard`.
PROGRESS_MIN_STEPS = 1000


# ----------------------------------------------------------------------------------------------------------
# Small pieces shared by every plot
# ----------------------------------------------------------------------------------------------------------


def _new_figure(figsize, constrained: bool = True) -> Figure:
    _register_png_formatter()
    return Figure(figsize=figsize, dpi=DPI, layout="constrained" if constrained else None)


def _register_png_formatter() -> None:
    """Make IPython show a bare Figure as a PNG even when pyplot (and its inline backend) was never imported."""
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        formatter.for_type(Figure, figure_png)


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at its own size and dpi."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


_MAX_MARKS = 200  # per series: a long stretch of NaN or 0 is shown by evenly spaced marks


def _edge_marks(ax: Axes, x, where, *, top: bool, label: str | None, color, gid: str) -> None:
    """Marks at the top edge of `ax` (NaN/Inf) or its bottom edge (0 on a log axis) at the steps in `where`."""
    steps = np.asarray(x)[where]
    if len(steps) > _MAX_MARKS:
        steps = steps[np.linspace(0, len(steps) - 1, _MAX_MARKS).astype(int)]
    if label in ax.get_legend_handles_labels()[1]:
        label = None  # one legend entry per kind of mark
    ax.plot(
        steps,
        np.full(len(steps), 0.97 if top else 0.03),
        ls="",
        marker="X" if top else "v",
        ms=7 if top else 5,
        color=color,
        transform=ax.get_xaxis_transform(),  # x in steps, y in axes fraction
        clip_on=False,
        label=label,
        gid=gid,
    )


def _line(ax: Axes, x, y, *, mark_color=None, mark_label="not finite (NaN/Inf)", log: bool = True, **kw) -> None:
    """Plot y as a line, with a gap and a cross at the top edge wherever it is NaN or Inf.

    On a log axis (`log`), values of exactly 0 (a dead layer's gradient, a skipped update) get a triangle
    at the bottom edge: a log scale cannot show them and they should not vanish silently.
    """
    y = np.asarray(y, dtype=float)
    finite = np.isfinite(y)
    ax.plot(x, np.where(finite, y, np.nan), **kw)
    if not finite.all():
        color = mark_color or COLORS["nonfinite"]
        _edge_marks(ax, x, ~finite, top=True, label=mark_label, color=color, gid="nonfinite")
    zero = finite & (y <= 0)
    if log and zero.any():
        color = kw.get("color", "grey")
        _edge_marks(ax, x, zero, top=False, label="0 (off the log scale)", color=color, gid="zero")


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


class _PowerFormatter(LogFormatter):
    """Log-axis tick labels as plain text with Unicode superscripts (10\u207b\u00b3, 2\u00d710\u00b9).

    Looks like matplotlib's default but skips mathtext, whose parse cache (50 entries) thrashes on a dashboard
    with five log axes: this alone makes a redraw about twice as fast.
    """

    def _num_to_string(self, x, vmin, vmax):
        exponent = int(np.floor(np.log10(x) + 1e-9))
        coeff = x / 10.0**exponent
        power = f"10{str(exponent).translate(_SUPERSCRIPT)}"
        return power if abs(coeff - 1) < 1e-6 else f"{coeff:.2g}\u00d7{power}"


def _power_labels(axis) -> None:
    axis.set_major_formatter(_PowerFormatter())
    axis.set_minor_formatter(_PowerFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _safe_log_scale(ax: Axes, *arrays) -> None:
    """Log y axis over at least two decades (zeros leave a gap); fixed limits when nothing is positive and finite.

    Call after the data are drawn. Two decades keep the labels at powers of ten: a narrower view would
    label minor ticks (2x10^-3, 3x10^-3, ...), whose wide labels collide with the neighbouring panel.
    """
    if ax.get_yscale() != "log":
        ax.set_yscale("log", nonpositive="mask")
        _power_labels(ax.yaxis)
    values = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays]) if arrays else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        if not getattr(ax, "_has_finite_data", False):  # else keep the limits that earlier data set
            ax.set_ylim(1e-3, 1e3)
        return
    ax._has_finite_data = True
    ax.set_autoscaley_on(True)  # an earlier call may have fixed the limits; new data must fit too
    ax.relim()
    ax.autoscale_view(scalex=False)
    low, high = ax.get_ylim()
    if high / low < 100:
        middle = np.sqrt(low * high)
        ax.set_ylim(middle / 10, middle * 10)


def _legend(ax: Axes) -> None:
    """A legend when the axes hold more than one labelled thing."""
    handles, labels = ax.get_legend_handles_labels()
    if len(handles) > 1:
        # "best" tests every plotted point: fine for a few thousand, slow (and it warns) beyond.
        points = sum(len(line.get_xdata()) for line in ax.lines)
        ax.legend(fontsize=8, loc="best" if points <= 5000 else "upper right")


def _layer_ticks(ax: Axes, names: Sequence[str], axis: str = "x") -> None:
    """Layer names as ticks, thinned out so that at most about 12 are written."""
    every = max(1, -(-len(names) // 12))
    ticks = list(range(0, len(names), every))
    if ticks[-1] != len(names) - 1:
        ticks.append(len(names) - 1)
    labels = [names[i] for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, labels, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
        ax.set_xlabel(LAYER_AXIS)
    else:
        ax.set_yticks(ticks, labels)
        ax.set_ylabel(LAYER_AXIS)


def _mark_divergence(ax: Axes, history, *, text: bool = False) -> None:
    """A labelled vertical line at the divergence step (and, with `text`, what went wrong and where)."""
    t = history.diverged_at
    if t is None:
        return
    ax.axvline(t, color=COLORS["diverged"], ls="--", lw=1.5, label=f"diverged at step {t}", gid="diverged")
    if text:
        left = t >= 5  # the note goes left of the line, unless the line is at the left edge
        ax.annotate(
            f"diverged at step {t}\n{history.diverged_reason} not finite\nbegan in {history.diverged_layer}",
            xy=(t, 0.5),
            xycoords=ax.get_xaxis_transform(),
            xytext=(-6 if left else 6, 0),
            textcoords="offset points",
            ha="right" if left else "left",
            va="center",
            fontsize=8,
            color=COLORS["diverged"],
            bbox={"boxstyle": "round", "fc": "white", "ec": COLORS["diverged"], "alpha": 0.9},
            gid="diverged",
        )


class _Shown(NamedTuple):
    """What the plots draw of a History or a SeedRuns.

    One run: itself. Several seeds: a History of their mean at each step (over the seeds with finite values
    there), the min-max band of `loss` and `grad_norm`, and the seeds' own divergence steps.
    """

    history: History
    bands: dict[str, tuple[np.ndarray, np.ndarray]]
    diverged: list[int]  # the step at which each diverged seed stopped (several seeds only)
    seeds: int  # 1 for a History


def _shown(run: History | SeedRuns) -> _Shown:
    if isinstance(run, History):
        return _Shown(run, {}, [], 1)
    stats = {}
    for field in ("loss", "grad_norm", "layer_grad_norms", "update_ratio", "clipped", "skipped", "lr"):
        values = run.stacked(field)
        values[~np.isfinite(values)] = np.nan
        with warnings.catch_warnings():  # a step where no seed is finite stays NaN, and is marked as such
            warnings.simplefilter("ignore", RuntimeWarning)
            stats[field] = (np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0))
    mean = History(
        config=run.config,
        layer_names=run.layer_names,
        **{field: stats[field][0] for field in ("loss", "grad_norm", "layer_grad_norms", "update_ratio", "lr")},
        clipped=stats["clipped"][0] >= 0.5,  # on most seeds
        skipped=stats["skipped"][0] >= 0.5,
    )
    bands = {field: stats[field][1:] for field in ("loss", "grad_norm")}
    return _Shown(mean, bands, [h.diverged_at for h in run.histories if h.diverged_at is not None], len(run.seeds))


def _band(ax: Axes, shown: _Shown, field: str, color, label: str | None = None) -> None:
    """The min-max band over seeds of `field` (nothing for one run)."""
    if field in shown.bands:
        low, high = shown.bands[field]
        ax.fill_between(np.arange(len(low)), low, high, color=color, alpha=0.2, lw=0, label=label)


def _mark_seed_divergences(ax: Axes, shown: _Shown) -> None:
    """A thin dashed line at the step where each diverged seed stopped."""
    for i, t in enumerate(sorted(shown.diverged)):
        label = f"{len(shown.diverged)} of {shown.seeds} seeds diverged" if i == 0 else None
        ax.axvline(t, color=COLORS["diverged"], ls="--", lw=0.8, label=label, gid="diverged")


def _step_limits(ax: Axes, shown: _Shown, planned: int) -> None:
    """While running, the x axis spans the planned steps; diverged runs are shown up to their last step."""
    history = shown.history
    ended = [history.diverged_at] if history.diverged_at is not None else shown.diverged
    if ended and len(ended) == shown.seeds:
        ax.set_xlim(-0.5, max(max(ended) * 1.05, 10) + 0.5)
    else:
        ax.set_xlim(-0.5, max(planned, history.steps, 2) - 0.5)


# ----------------------------------------------------------------------------------------------------------
# The dashboard: four panels of one History
# ----------------------------------------------------------------------------------------------------------


def draw_dashboard(run: History | SeedRuns, fig: Figure, title: str = "", diagnosis=None) -> Figure:
    """Draw loss, global gradient norm, per-layer gradient norms and update ratios of `run` into `fig`.

    `diagnosis` (a `helpers.diagnose.Diagnosis`, e.g. of a failed run) adds its one-line report under the title.

    For a SeedRuns: the mean over the seeds, with the min-max band of the loss and the gradient norm. This is
    what `Dashboard` redraws and what a slider panel shows by default. The axes are made on the first call and
    kept: a redraw replaces only the data, several times faster than building the figure again.
    """
    d = _dashboard_axes(fig)
    for ax in (d.loss, d.grad, d.heat, d.ratio):
        _remove_data(ax, keep=d.image)
    shown = _shown(run)
    history = shown.history
    steps = np.arange(history.steps)
    planned = run.config.steps
    status = run.summary() if run.done else f"step {run.steps} of {planned}"
    if diagnosis is not None:
        status += "\n" + textwrap.shorten(f"diagnosis: {diagnosis.line}", 160, placeholder=" ...")
    d.loss.get_gridspec().update(top=0.875 if diagnosis is None else 0.84)
    seeds = f"   seeds {_seed_list(run.seeds)}, mean and min-max" if shown.seeds > 1 else ""
    fig.suptitle(
        f"{title + '   ' if title else ''}{run.config}{seeds}\n{status}",
        fontsize=9.5,
        color=COLORS["diverged"] if history.diverged_at is not None or shown.diverged else "black",
    )
    _draw_loss(d.loss, shown, steps)
    _draw_grad_norm(d.grad, shown, steps)
    _draw_layer_heatmap(d.heat, d.image, d.colorbar, history)
    _draw_update_ratio(d.ratio, history, steps)
    for ax in (d.loss, d.grad, d.heat, d.ratio):
        _mark_seed_divergences(ax, shown)
        _step_limits(ax, shown, planned)
    for ax in (d.loss, d.grad, d.ratio):
        _legend(ax)
    return fig


def _seed_list(seeds) -> str:
    """0-4 for consecutive seeds, else 0, 3, 7."""
    seeds = list(seeds)
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


class _DashboardAxes(NamedTuple):
    loss: Axes
    grad: Axes
    heat: Axes
    ratio: Axes
    image: AxesImage
    colorbar: Colorbar


_LAYOUTS: weakref.WeakKeyDictionary[Figure, _DashboardAxes] = weakref.WeakKeyDictionary()


def _dashboard_axes(fig: Figure) -> _DashboardAxes:
    """The dashboard's axes in `fig`, made once, in a fixed layout (constrained layout costs 4x per redraw)."""
    d = _LAYOUTS.get(fig)
    if d is not None and all(ax in fig.axes for ax in (d.loss, d.grad, d.heat, d.ratio)):
        return d
    fig.clear()
    fig.set_layout_engine("none")
    grid = fig.add_gridspec(2, 2, left=0.1, right=0.985, bottom=0.085, top=0.875, wspace=0.32, hspace=0.42)
    (ax_loss, ax_grad), (ax_heat, ax_ratio) = grid.subplots()
    cmap = colormaps[HEATMAP_CMAP].with_extremes(bad=COLORS["nonfinite"])
    image = ax_heat.imshow(
        np.ones((1, 1)), aspect="auto", origin="lower", interpolation="nearest", cmap=cmap, norm=LogNorm(0.5, 2)
    )
    colorbar = fig.colorbar(image, ax=ax_heat, pad=0.015, fraction=0.06, label="gradient norm (log scale)")
    colorbar.formatter = _PowerFormatter()
    colorbar.minorformatter = _PowerFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4))
    ax_loss.set_title("training loss")
    ax_loss.set_ylabel("loss (log scale)")
    ax_grad.set_ylabel("||gradient|| (log scale)")
    ax_heat.set_title("per-layer gradient norm (log colour scale)")
    ax_ratio.set_title("update / parameter ratio per layer")
    ax_ratio.set_ylabel("||update|| / ||W|| (log scale)")
    for ax in (ax_loss, ax_grad, ax_heat, ax_ratio):
        ax.set_xlabel("step")
    d = _DashboardAxes(ax_loss, ax_grad, ax_heat, ax_ratio, image, colorbar)
    _LAYOUTS[fig] = d
    return d


def _remove_data(ax: Axes, keep=None) -> None:
    """Remove what a previous redraw put into `ax` (lines, markers, bands, notes, legend); keep axes and labels."""
    for group in (ax.lines, ax.collections, ax.patches, ax.texts, ax.images):
        for artist in list(group):
            if artist is not keep:
                artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.set_autoscaley_on(True)


def _draw_loss(ax: Axes, shown: _Shown, steps) -> None:
    history = shown.history
    _band(ax, shown, "loss", COLORS["loss"], f"min-max of {shown.seeds} seeds")
    label = "training loss" + (", mean" if shown.seeds > 1 else "")
    _line(ax, steps, history.loss, color=COLORS["loss"], lw=1.2, label=label)
    _safe_log_scale(ax, history.loss, *shown.bands.get("loss", ()))
    _mark_divergence(ax, history, text=True)


def _draw_grad_norm(ax: Axes, shown: _Shown, steps) -> None:
    history = shown.history
    config = history.config
    gn = np.asarray(history.grad_norm, dtype=float)
    _band(ax, shown, "grad_norm", COLORS["grad_norm"], f"min-max of {shown.seeds} seeds")
    _line(
        ax, steps, gn, color=COLORS["grad_norm"], lw=1.2, label="gradient norm" + (", mean" if shown.seeds > 1 else "")
    )
    if config.clip_norm is not None and config.clip_mode == "global_norm":
        ax.axhline(config.clip_norm, color=COLORS["clip"], ls=":", lw=1.5, label=f"clip_norm = {config.clip_norm:g}")
    clipped = np.asarray(history.clipped, dtype=bool)
    if clipped.any():
        where = " on most seeds" if shown.seeds > 1 else ""
        ax.plot(
            steps[clipped],
            np.where(np.isfinite(gn[clipped]), gn[clipped], np.nan),
            ls="",
            marker="o",
            ms=3,
            color=COLORS["clipped"],
            label=f"clipped{where} ({int(clipped.sum())} of {history.steps} steps)",
            gid="clipped",
        )
    _safe_log_scale(ax, gn, [config.clip_norm or np.nan], *shown.bands.get("grad_norm", ()))
    _mark_divergence(ax, history)
    mode = "" if config.clip_norm is None or config.clip_mode == "global_norm" else f" (clip_mode={config.clip_mode})"
    ax.set_title(f"global gradient norm, before clipping{mode}")


def _draw_layer_heatmap(ax: Axes, image: AxesImage, colorbar: Colorbar, history) -> None:
    g = np.asarray(history.layer_grad_norms, dtype=float).T  # (layers, steps): input at the bottom
    finite = np.isfinite(g)
    positive = g[finite & (g > 0)]
    vmin, vmax = (positive.min(), positive.max()) if positive.size else (1e-3, 1.0)
    if vmax / vmin < 100:  # at least two decades, as on the log axes: noise should not look like explosion
        middle = np.sqrt(vmin * vmax)
        vmin, vmax = middle / 10, middle * 10
    image.set_data(np.ma.masked_invalid(np.where(finite, np.maximum(g, vmin), np.nan)))  # 0 -> lowest colour
    image.set_extent((-0.5, g.shape[1] - 0.5, -0.5, g.shape[0] - 0.5))
    image.set_clim(vmin, vmax)
    _layer_ticks(ax, history.layer_names, axis="y")
    # The "bad" colour of the map, explained under the colour bar (a legend would hide cells).
    colorbar.ax.set_xlabel("" if finite.all() else "\u25a0 NaN/Inf", fontsize=8, color=COLORS["nonfinite"])
    _mark_divergence(ax, history)


def _draw_update_ratio(ax: Axes, history, steps) -> None:
    ratio = np.asarray(history.update_ratio, dtype=float)
    names = history.layer_names
    ax.axhspan(*RATIO_BAND, color=COLORS["band"], alpha=0.18, lw=0, label="~1e-3 (rule of thumb)", gid="band")
    ax.axhline(1e-3, color=COLORS["band"], lw=0.8)
    colors = colormaps[LAYER_CMAP](np.linspace(0, 0.9, len(names)))
    for i, name in enumerate(names):
        label = f"{name} (input side)" if i == 0 else f"{name} (output side)" if i == len(names) - 1 else None
        _line(ax, steps, ratio[:, i], color=colors[i], lw=1, label=label)
    _safe_log_scale(ax, ratio, RATIO_BAND)
    _mark_divergence(ax, history)


def plot_history(history, title: str = "", diagnosis=None) -> Figure:
    """The dashboard of a finished run, as a new Figure (the same drawing `Dashboard` shows live)."""
    return draw_dashboard(history, _new_figure(DASHBOARD_SIZE, constrained=False), title, diagnosis)


class Dashboard:
    """A live dashboard: pass `dash.update` as `on_chunk` to `train`, then call `dash.finish(history)`.

    The figure is displayed once (in IPython) and redrawn in place through its display handle, at most
    `max_redraws_per_s` times a second; the run's last chunk is always drawn. Runs of at least
    `PROGRESS_MIN_STEPS` steps also get a tqdm progress bar (`progress=True / False` forces it on / off).
    """

    def __init__(self, title: str = "", max_redraws_per_s: float = 4, show: bool = True, progress: bool | None = None):
        self.title = title
        self.min_interval = 1.0 / max_redraws_per_s if max_redraws_per_s else 0.0
        self.show = show
        self.progress = progress
        self.figure = _new_figure(DASHBOARD_SIZE, constrained=False)
        self.redraws = 0
        self._handle = None
        self._last_draw = -np.inf
        self._drawn = None
        self._latest = None
        self._bar = None

    def update(self, history) -> None:
        """Record the run so far; redraw if enough time has passed since the last redraw or the run is over."""
        self._latest = history
        self._advance_bar(history)
        over = history.done
        if over or _now() - self._last_draw >= self.min_interval:
            self._redraw(history)
        if over:
            self._close_bar()

    def finish(self, history=None, diagnosis=None) -> Figure:
        """The final redraw (skipped if this history is already drawn, unless a `diagnosis` is to be shown under
        the title); returns the Figure."""
        history = history if history is not None else self._latest
        if history is not None and (history is not self._drawn or diagnosis is not None):
            self._latest = history
            self._redraw(history, diagnosis)
        self._close_bar()
        return self.figure

    def _redraw(self, history, diagnosis=None) -> None:
        draw_dashboard(history, self.figure, self.title, diagnosis)
        self._drawn = history
        self.redraws += 1
        self._last_draw = _now()
        if not self.show:
            return
        if self._handle is None:
            self._handle = _show(self.figure)
        else:
            self._handle.update(self.figure)

    def _advance_bar(self, history) -> None:
        wanted = self.progress if self.progress is not None else history.config.steps >= PROGRESS_MIN_STEPS
        if wanted and self._bar is None and self._drawn is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=history.config.steps, desc=self.title or "training", unit="step")
        if self._bar is not None:
            self._bar.update(history.steps - self._bar.n)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _now() -> float:
    return time.monotonic()


def _show(fig: Figure):
    """Display `fig` once and return its handle, or None outside IPython (a script shows nothing)."""
    if get_ipython() is None:
        return None
    _register_png_formatter()
    return display(fig, display_id=True)


# ----------------------------------------------------------------------------------------------------------
# Several runs, layer profiles, activation statistics
# ----------------------------------------------------------------------------------------------------------


def _largest_update_ratio(run: History | SeedRuns):
    """Per step, the largest ||update|| / ||W|| over the layers: (one run's line or the seeds' mean, their band)."""
    ratios = run.stacked("update_ratio") if isinstance(run, SeedRuns) else run.update_ratio[None]
    ratios = np.where(np.isfinite(ratios), ratios, np.nan)
    with warnings.catch_warnings():  # a step where nothing is finite stays NaN, and is marked as such
        warnings.simplefilter("ignore", RuntimeWarning)
        largest = np.nanmax(ratios, axis=-1)  # (seeds, steps)
        line = np.nanmean(largest, 0)
        band = (np.nanmin(largest, 0), np.nanmax(largest, 0)) if len(largest) > 1 else None
    return line, band


def compare_histories(histories: dict, title: str = "") -> Figure:
    """Loss, global gradient norm and largest update ratio of several runs on shared axes.

    The third panel is the course's scale-free measure of an explosion: per step, the largest ||update|| / ||W||
    over the layers (about 1e-3 is healthy). Each divergence is marked in its run's colour. A value may be a
    History (one line) or a SeedRuns (its mean as a line, its min-max over seeds as a band).
    """
    fig = _new_figure((11.0, 3.8))
    ax_loss, ax_grad, ax_ratio = fig.subplots(1, 3, sharex=True)
    ax_ratio.axhspan(*RATIO_BAND, color=COLORS["band"], alpha=0.18, lw=0, label="~1e-3 (rule of thumb)", gid="band")
    ratio_values = []
    colors = series(len(histories))
    everything = [_shown(run) for run in histories.values()]
    for name, shown, color in zip(histories, everything, colors, strict=True):
        h = shown.history
        steps = np.arange(h.steps)
        diverged = shown.diverged if shown.seeds > 1 else [h.diverged_at] if h.diverged_at is not None else []
        if shown.seeds > 1:
            label = f"{name} ({shown.seeds} seeds" + (f", {len(diverged)} diverged)" if diverged else ")")
        else:
            label = name if not diverged else f"{name} (diverged at step {diverged[0]})"
        for ax, field in ((ax_loss, "loss"), (ax_grad, "grad_norm")):  # one legend, on the loss panel
            _band(ax, shown, field, color)
            run_label = label if ax is ax_loss else None
            _line(ax, steps, getattr(h, field), color=color, lw=1.2, label=run_label, mark_label=None, mark_color=color)
        line, band = _largest_update_ratio(histories[name])
        if band is not None:
            ax_ratio.fill_between(np.arange(len(line)), *band, color=color, alpha=0.2, lw=0)
        _line(ax_ratio, np.arange(len(line)), line, color=color, lw=1.2, mark_label=None, mark_color=color)
        ratio_values += [line, *(band or ())]
        for ax in (ax_loss, ax_grad, ax_ratio):
            for t in diverged:
                ax.axvline(t, color=color, ls="--", lw=1 if shown.seeds == 1 else 0.7, gid="diverged")
    histories_shown = [shown.history for shown in everything]
    if any(not np.isfinite(np.concatenate([h.loss, h.grad_norm])).all() for h in histories_shown):
        # one legend entry for all the crosses and dashed lines
        ax_loss.plot([], [], ls="", marker="X", color="grey", label="not finite (NaN/Inf, run's colour)")
    if any(shown.diverged or shown.history.diverged_at is not None for shown in everything):
        ax_loss.add_line(Line2D([], [], color="grey", ls="--", lw=1, label="divergence step (run's colour)"))
    if any(shown.seeds > 1 for shown in everything):
        ax_loss.fill_between([], [], [], color="grey", alpha=0.2, lw=0, label="min-max over seeds; line: mean")
    any_clipping = any(h.config.clip_norm is not None for h in histories_shown)
    grad_title = "global gradient norm" + (", before clipping" if any_clipping else "")
    for ax, what, field in ((ax_loss, "training loss", "loss"), (ax_grad, grad_title, "grad_norm")):
        _safe_log_scale(
            ax, *[getattr(s.history, field) for s in everything], *[s.bands.get(field, ()) for s in everything]
        )
        ax.set_title(what)
        ax.set_xlabel("step")
    _safe_log_scale(ax_ratio, *ratio_values, RATIO_BAND)
    ax_ratio.set_title("largest update ratio over the layers")
    ax_ratio.set_xlabel("step")
    ax_ratio.set_ylabel("max over layers of ||update|| / ||W|| (log scale)", fontsize=9)
    ax_loss.set_ylabel("loss (log scale)")
    ax_grad.set_ylabel("||gradient|| (log scale)")
    _legend(ax_loss)
    ax_ratio.legend(fontsize=8)  # always: the band is the reading guide
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_layer_profile(
    values,
    layer_names: Sequence[str],
    *,
    theory=None,
    ylabel: str = "gradient norm (log scale)",
    title: str = "gradient norm per layer at initialisation",
    ax: Axes | None = None,
    label: str = "measured",
    color: str | None = None,
) -> Axes:
    """Per-layer values (input -> output) as points on a log scale, with an optional theory line.

    `theory` is one predicted value per layer (drawn dashed). Call again with the same `ax` and another
    `label` / `color` to put several profiles on one plot.
    """
    if ax is None:
        ax = _new_figure((6.4, 3.6)).subplots()
    values = np.asarray(values, dtype=float)
    if values.shape != (len(layer_names),):
        raise ValueError(f"values: need one number per layer ({len(layer_names)}), got shape {values.shape}")
    x = np.arange(len(layer_names))
    _line(ax, x, values, ls="-", marker="o", ms=4, lw=1, color=color or COLORS["measured"], label=label)
    if theory is not None:
        theory = np.broadcast_to(np.asarray(theory, dtype=float), values.shape)
        ax.plot(x, theory, ls="--", lw=1.5, color=COLORS["theory"], label="theory", gid="theory")
    _safe_log_scale(ax, values, [] if theory is None else theory)
    _layer_ticks(ax, list(layer_names))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend(ax)
    return ax


def plot_activation_stats(stats, title: str = "") -> Figure:
    """Std (log scale), mean and dead-unit fraction of every hidden block's output, input -> output."""
    fig = _new_figure((10.0, 3.4))
    ax_std, ax_mean, ax_dead = fig.subplots(1, 3)
    x = np.arange(len(stats.layer_names))
    _line(ax_std, x, stats.std, marker="o", ms=4, lw=1, color=COLORS["measured"], label="std")
    _safe_log_scale(ax_std, stats.std)
    ax_std.set_title("activation std")
    ax_std.set_ylabel("std (log scale)")
    _line(ax_mean, x, stats.mean, marker="o", ms=4, lw=1, color=COLORS["measured"], label="mean", log=False)
    ax_mean.axhline(0, color="grey", lw=0.8)
    ax_mean.set_title("activation mean")
    ax_mean.set_ylabel("mean")
    ax_dead.bar(x, stats.dead_fraction, color=COLORS["measured"], width=0.7)
    ax_dead.set_ylim(0, 1.02)
    ax_dead.set_title("dead units")
    ax_dead.set_ylabel("fraction of units, 0 for the whole batch")
    for ax in (ax_std, ax_mean, ax_dead):
        _layer_ticks(ax, list(stats.layer_names))
        _legend(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_layer_histograms(values, title: str = "", layers: int = 6) -> Figure:
    """Histograms of `log10 |value|` for a few layers spread from input to output: each hidden block's output
    (left) and each kernel's gradient (right), from `diagnostics.activations_and_grads`.

    On a log axis a layer that multiplies the signal by s shifts its histogram by log10(s), so geometric growth
    with depth reads as evenly spaced curves. Exact zeros (a ReLU's inactive units) have no logarithm: the
    legend gives their share.
    """
    fig = _new_figure((10.0, 3.8))
    axes = fig.subplots(1, 2)
    panels = [
        (values.activations, values.layer_names[:-1], "hidden block outputs", "log10 |activation|"),
        (values.grads, values.layer_names, "weight gradients dL/dW", "log10 |gradient|"),
    ]
    for ax, (arrays, names, what, xlabel) in zip(axes, panels, strict=True):
        shown = np.unique(np.linspace(0, len(arrays) - 1, min(layers, len(arrays))).round().astype(int))
        colors = colormaps[LAYER_CMAP](np.linspace(0, 0.9, len(shown)))
        for i, color in zip(shown, colors, strict=True):
            a = np.abs(np.asarray(arrays[i], dtype=np.float64))
            nonzero = a[(a > 0) & np.isfinite(a)]
            zeros = f", {np.mean(a == 0):.0%} zero" if np.any(a == 0) else ""
            if nonzero.size:
                ax.hist(
                    np.log10(nonzero),
                    bins=60,
                    density=True,
                    histtype="step",
                    lw=1.3,
                    color=color,
                    label=f"{names[i]}{zeros}",
                )
        ax.set(title=what, xlabel=xlabel, ylabel="density")
        ax.legend(fontsize=7, title=LAYER_AXIS, title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_theory_vs_measurement(
    measured: dict,
    theory: dict | None = None,
    *,
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    xscale: str = "linear",
    yscale: str = "log",
    xticks=None,
    lines: bool = False,
    each_seed: bool = False,
    layer_names: Sequence[str] | None = None,
    center: str = "mean",
) -> Axes:
    """Measurements as points, predictions as dashed lines, on one axes: the course's one picture of a check.

    `measured` and `theory` map a label to `(x, y)`. A measured `y` of shape (seeds, len(x)) is drawn as its mean
    (points) and its min-max over the seeds (a band). With as many theory lines as measured series (two or more),
    the i-th line takes the i-th series' colour; otherwise every line is drawn in the theory colour. `xticks`:
    the x values to label (useful on a log axis). `lines=True` joins the measured points into lines (for
    curves over many steps). `each_seed=True` draws every seed's points (side by side) instead of mean and band.
    `layer_names`: x runs over the layers 0, 1, ... (input -> output), labelled with these names.
    `center`: what the points of a (seeds, n) series are, "mean" or "rms" (root-mean-square over the seeds, what
    a mean-field theory of second moments predicts).
    Returns the axes, to add to (a region, a reference line) or to call again with `ax=` for another panel.
    """
    theory = theory or {}
    if center not in ("mean", "rms"):
        raise ValueError(f"center must be 'mean' or 'rms', got {center!r}")
    if ax is None:
        ax = _new_figure((6.8, 4.0)).subplots()
    colors = series(len(measured))
    paired = len(theory) == len(measured) > 1
    for (label, (x, y)), color in zip(measured.items(), colors, strict=True):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if y.shape[-1:] != x.shape:
            raise ValueError(f"measured[{label!r}]: y has shape {y.shape}, x has {x.shape}")
        if y.ndim == 2 and each_seed:
            for k, row in enumerate(y):
                shift = 0.03 * (k - (len(y) - 1) / 2)
                xk = x * (1 + shift) if xscale == "log" else x + shift * np.ptp(x)
                row_label = label if k == 0 else None
                _line(ax, xk, row, ls="", marker="o", ms=4, color=color, label=row_label, log=yscale == "log")
            continue
        if y.ndim == 2:  # a seed's non-finite value leaves the band; it makes the mean non-finite (and marked)
            finite = np.where(np.isfinite(y), y, np.nan)
            if np.isfinite(finite).any():
                with warnings.catch_warnings():  # a step where no seed is finite leaves a gap in the band
                    warnings.simplefilter("ignore", RuntimeWarning)
                    low, high = np.nanmin(finite, 0), np.nanmax(finite, 0)
                ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)
            label = f"{label} ({center.upper() if center == 'rms' else center}; band: min-max over {len(y)} seeds)"
            y = np.sqrt(np.mean(y**2, 0)) if center == "rms" else y.mean(0)
        style = {"ls": "-", "lw": 1.2} if lines else {"ls": "", "marker": "o", "ms": 4}
        _line(ax, x, y, color=color, label=label, log=yscale == "log", **style)
    for i, (label, (x, y)) in enumerate(theory.items()):
        color = colors[i] if paired else COLORS["theory"]
        ax.plot(np.asarray(x, float), np.asarray(y, float), ls="--", lw=1.3, color=color, label=label, gid="theory")
    ax.set_xscale(xscale)
    if xticks is not None:
        ax.set_xticks(xticks, [f"{t:g}" for t in xticks])
        ax.tick_params(axis="x", which="minor", labelbottom=False)
    if yscale == "log":
        _safe_log_scale(ax, *(np.asarray(y, dtype=float) for _, y in [*measured.values(), *theory.values()]))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if layer_names is not None:
        _layer_ticks(ax, list(layer_names))
    _legend(ax)
    return ax


def plot_seed_rows(
    rows: dict, *, reference: str | None = None, ax: Axes | None = None, title: str = "", xlabel: str = "test accuracy"
) -> Axes:
    """One row per label, top to bottom: a point per seed and a bar at their mean, so the gap between two rows
    can be read against the spread within each. `rows` maps a label to one value per seed; the mean of row
    `reference`, if given, is drawn as a dotted line across all rows."""
    if not rows:
        raise ValueError("rows must not be empty")
    if reference is not None and reference not in rows:
        raise ValueError(f"reference must be one of the rows {list(rows)}, got {reference!r}")
    if ax is None:
        ax = _new_figure((6.8, 0.8 + 0.42 * len(rows))).subplots()
    for i, (label, values) in enumerate(rows.items()):
        values = np.asarray(values, dtype=float)
        if values.ndim != 1 or not np.isfinite(values).all():
            raise ValueError(f"rows[{label!r}]: need one finite value per seed, got {values}")
        ax.plot(values, np.full(len(values), i), "o", ms=5, mfc="none", color=COLORS["measured"])
        ax.plot([values.mean()], [i], "|", ms=16, mew=2.5, color=COLORS["theory"])
    if reference is not None:
        mean = float(np.mean(rows[reference]))
        ax.axvline(mean, ls=":", lw=1.2, color=COLORS["theory"], label=f"mean of {reference!r}", gid="reference")
    ax.plot([], [], "o", mfc="none", color=COLORS["measured"], label="one seed")
    ax.plot([], [], "|", ms=10, mew=2.5, color=COLORS["theory"], label=f"mean of {len(values)} seeds")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    ax.set(title=title, xlabel=xlabel)
    _legend(ax)
    return ax


def plot_histograms(
    samples: dict,
    *,
    bins=40,
    ax: Axes | None = None,
    density: bool = False,
    xscale: str = "linear",
    colors: Sequence | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str | None = None,
    legend: bool = True,
) -> Axes:
    """Histograms of several samples on one axes: one sample filled, several as outlines in `series` colours.

    `samples` maps a label to an array of any shape; non-finite values (and, with `xscale="log"`, values <= 0)
    are left out. `bins`: a number of bins, spread evenly in log10 with `xscale="log"`, or the bin edges.
    `ylabel` defaults to "density" or "count" ("" for none). `legend=False` leaves the legend to a neighbour.
    """
    if ax is None:
        ax = _new_figure((6.8, 3.6)).subplots()
    arrays = {label: np.ravel(np.asarray(a, dtype=float)) for label, a in samples.items()}
    arrays = {label: a[np.isfinite(a) & ((a > 0) if xscale == "log" else True)] for label, a in arrays.items()}
    if xscale == "log" and np.ndim(bins) == 0:
        shown = np.concatenate(list(arrays.values()))
        bins = np.logspace(np.log10(shown.min()), np.log10(shown.max()), int(bins) + 1)
    one = len(arrays) == 1
    for (label, a), color in zip(arrays.items(), colors or series(len(arrays)), strict=True):
        style = {"histtype": "bar"} if one else {"histtype": "step", "lw": 1.5}
        ax.hist(a, bins=bins, density=density, color=color, label=label, **style)
    ax.set_xscale(xscale)
    ax.set(title=title, xlabel=xlabel, ylabel=("density" if density else "count") if ylabel is None else ylabel)
    if legend:
        _legend(ax)
    return ax


def reference_lines(
    ax: Axes, *, x: dict | None = None, y: dict | None = None, color=None, ls: str = ":", lw: float = 1.5
) -> Axes:
    """Labelled lines across `ax`, vertical at each value of `x` and horizontal at each value of `y` (each maps a
    label to a value), in the theory colour unless `color` is given; the legend is drawn again to list them."""
    color = color or COLORS["theory"]
    for label, value in (x or {}).items():
        ax.axvline(value, color=color, ls=ls, lw=lw, label=label, gid="reference")
    for label, value in (y or {}).items():
        ax.axhline(value, color=color, ls=ls, lw=lw, label=label, gid="reference")
    _legend(ax)
    return ax


def add_open_points(ax: Axes, points: dict, *, colors: Sequence | None = None) -> Axes:
    """Open circles on `ax` for a second measurement of series drawn there: `points` maps a label to `(x, y)`, the
    i-th in the i-th `series` colour (as `plot_theory_vs_measurement` gives its i-th series) unless `colors`."""
    log = ax.get_yscale() == "log"
    colors = colors or series(len(points))
    for (label, (x, y)), color in zip(points.items(), colors, strict=True):
        _line(ax, np.asarray(x, dtype=float), y, ls="", marker="o", ms=6, mfc="none", color=color, label=label, log=log)
    if log:
        _safe_log_scale(ax, *(np.asarray(y, dtype=float) for _, y in points.values()))  # limits grow to hold them
    _legend(ax)
    return ax
