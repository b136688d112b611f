"""Tests for helpers/plots.py on synthetic histories (no training): live redraws, NaN/Inf, labels, no figure leaks."""

from __future__ import annotations

import io
import re
import warnings

import matplotlib.pyplot as plt  # only to check that nothing lands in pyplot's registry
import numpy as np
import pytest
from IPython.core.formatters import PNGFormatter
from matplotlib.colors import to_rgb

from helpers import plots
from helpers.diagnostics import ActivationStats, LayerValues
from helpers.models import ModelConfig
from helpers.train import History, SeedRuns, TrainConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_history(steps=120, layers=4, *, planned=None, clip_norm=None, diverged_at=None, seed=0) -> History:
    """A History as `train` returns it; with `diverged_at`, the last row holds NaN and Inf like a real blow-up."""
    rng = np.random.default_rng(seed)
    n = steps if diverged_at is None else diverged_at + 1
    t = np.arange(n)
    loss = 2.3 * np.exp(-t / 40) + 0.05 * rng.random(n)
    grad = 0.5 + 3 * rng.random(n)
    layer_grads = 0.1 + rng.random((n, layers)) * np.linspace(1, 5, layers)
    ratio = 1e-3 * (0.5 + rng.random((n, layers)))
    config = TrainConfig(steps=planned or steps, clip_norm=clip_norm)
    extra = {}
    if diverged_at is not None:
        loss[-1], grad[-1] = np.nan, np.inf
        layer_grads[-1, : layers // 2], layer_grads[-1, layers // 2 :] = np.nan, np.inf
        ratio[-1] = np.nan
        ratio[max(n - 2, 0), 0] = np.inf
        extra = {"diverged_at": diverged_at, "diverged_layer": "dense1", "diverged_reason": "loss"}
    return History(
        config=config,
        layer_names=[f"dense{i}" for i in range(layers - 1)] + ["head"],
        loss=loss.astype(np.float32),
        grad_norm=grad.astype(np.float32),
        layer_grad_norms=layer_grads.astype(np.float32),
        update_ratio=ratio.astype(np.float32),
        clipped=grad > clip_norm if clip_norm else np.zeros(n, bool),
        skipped=np.zeros(n, bool),
        lr=np.full(n, config.lr, np.float32),
        **extra,
    )


def prefix(history: History, k: int) -> History:
    """The first k steps of `history`, as `on_chunk` would see them mid-run."""
    cut = {f: getattr(history, f)[:k] for f in ("loss", "grad_norm", "layer_grad_norms", "update_ratio", "clipped")}
    cut.update(skipped=history.skipped[:k], lr=history.lr[:k])
    return History(config=history.config, layer_names=history.layer_names, **cut)


def with_gid(fig, gid):
    return [a for a in fig.findobj() if a.get_gid() == gid]


def step_axes(fig):
    return [ax for ax in fig.axes if ax.get_xlabel() == "step"]


class FakeHandle:
    def __init__(self):
        self.updates = 0

    def update(self, obj):
        self.updates += 1


@pytest.fixture
def fake_ipython(monkeypatch):
    """Pretend to run in IPython: `display(fig, display_id=True)` is recorded, not shown."""
    shown = []
    handle = FakeHandle()

    def display(obj, display_id=False):
        assert display_id is True, "the dashboard must be shown with a display handle"
        shown.append(obj)
        return handle

    class Shell:
        class display_formatter:
            formatters = {"image/png": PNGFormatter()}

    monkeypatch.setattr(plots, "get_ipython", lambda: Shell)
    monkeypatch.setattr(plots, "display", display)
    return shown, handle, Shell


def test_colors_are_okabe_ito_and_series_distinct():
    for role in ("loss", "grad_norm", "clip", "clipped", "theory", "measured", "diverged", "band"):
        assert role in plots.COLORS
    okabe_ito = {to_rgb(c) for c in plots._OKABE_ITO.values()}
    assert {to_rgb(c) for c in plots.COLORS.values()} <= okabe_ito
    for n in (1, 3, 8, 12):
        colors = plots.series(n)
        assert len(colors) == n and len({to_rgb(c) for c in colors}) == n
    assert plots.COLORS.series(3) == plots.series(3)


def test_dashboard_100_updates_one_display_no_leaks(fake_ipython):
    shown, handle, _ = fake_ipython
    full = fake_history(steps=200, clip_norm=2.0)
    before = plt.get_fignums()
    dash = plots.Dashboard("leak test", max_redraws_per_s=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "More than 20 figures have been opened"
        for k in range(2, 202, 2):
            last = prefix(full, k)
            dash.update(last)
            if k == 2:
                artists = {i: len(ax.get_children()) for i, ax in enumerate(dash.figure.axes)}
        fig = dash.finish(last)  # train returns the History it passed to the last on_chunk
    assert dash.redraws == 100
    assert shown == [fig] and handle.updates == 99, "shown once, then updated in place"
    assert plt.get_fignums() == before
    assert len(fig.axes) == 5  # four panels and the colour bar; no axes pile up
    # Redraws replace their artists instead of adding to them (clipped markers appear once clipping starts).
    grown = {i: len(ax.get_children()) - artists[i] for i, ax in enumerate(fig.axes)}
    assert max(grown.values()) <= 3, grown
    assert plots.figure_png(fig).startswith(PNG_MAGIC)


def test_redrawing_a_deeper_network_reuses_the_axes():
    fig = plots.plot_history(fake_history(layers=4))
    axes = list(fig.axes)
    plots.draw_dashboard(fake_history(layers=12, steps=50), fig)
    assert fig.axes == axes
    heat = next(ax for ax in fig.axes if ax.get_ylabel() == "layer (input -> output)")
    assert heat.get_yticklabels()[-1].get_text() == "head" and heat.images[0].get_array().shape == (12, 50)


def test_dashboard_is_throttled_but_always_draws_the_end(fake_ipython, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(plots, "_now", lambda: clock[0])
    full = fake_history(steps=100)
    dash = plots.Dashboard(max_redraws_per_s=4)
    for k in range(1, 101):  # 100 chunks, 10 ms apart: 1 s in all
        clock[0] += 0.01
        dash.update(prefix(full, k) if k < 100 else full)
    assert 4 <= dash.redraws <= 6
    assert dash._drawn is full, "the last chunk is drawn even though it came too soon after the previous redraw"
    redraws = dash.redraws
    dash.finish(full)
    assert dash.redraws == redraws, "finish does not redraw what is already drawn"


def test_dashboard_without_ipython_shows_nothing_and_returns_figure():
    dash = plots.Dashboard(show=True)
    h = fake_history(steps=30)
    dash.update(h)
    fig = dash.finish()
    assert dash._handle is None and fig is dash.figure


def test_progress_bar_only_for_long_runs(monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total, **kw):
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setattr("tqdm.auto.tqdm", FakeTqdm)
    plots.Dashboard(show=False).update(fake_history(steps=50))
    assert bars == []
    long = fake_history(steps=plots.PROGRESS_MIN_STEPS)
    dash = plots.Dashboard(show=False)
    dash.update(prefix(long, 500))
    dash.update(long)
    assert len(bars) == 1 and bars[0].n == long.steps and bars[0].closed


def test_nonfinite_history_is_marked_not_raised():
    h = fake_history(steps=80, planned=300, diverged_at=60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.plot_history(h, "diverging run")
        png = plots.figure_png(fig)
    assert png.startswith(PNG_MAGIC)
    lines = [a for a in with_gid(fig, "diverged") if hasattr(a, "get_xdata")]
    assert len(lines) == 4 and all(np.allclose(line.get_xdata(), 60) for line in lines), "a divergence line per panel"
    notes = [a.get_text() for a in with_gid(fig, "diverged") if hasattr(a, "get_text")]
    assert any("diverged at step 60" in t and "dense1" in t for t in notes)
    crosses = with_gid(fig, "nonfinite")
    assert {ax.get_title() for ax in fig.axes for c in crosses if c.axes is ax} >= {
        "training loss",
        "global gradient norm, before clipping",
        "update / parameter ratio per layer",
    }
    # NaN loss at step 60, Inf ratio at step 59: each shown at its step, none dropped.
    loss_cross = next(c for c in crosses if c.axes.get_title() == "training loss")
    assert list(loss_cross.get_xdata()) == [60]
    ratio_steps = {x for c in crosses if c.axes.get_title().startswith("update") for x in c.get_xdata()}
    assert ratio_steps == {59, 60}
    colorbar_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "gradient norm (log scale)")
    assert "NaN/Inf" in colorbar_ax.get_xlabel()
    assert "diverged at step 60" in fig.get_suptitle()


def test_zeros_on_log_axes_are_marked_at_the_bottom():
    h = fake_history(steps=50)
    h.update_ratio[10:, 1:] = 0.0  # a network whose layers stopped moving
    h.grad_norm[40] = 0.0
    fig = plots.plot_history(h)
    zeros = with_gid(fig, "zero")
    ratio_marks = [z for z in zeros if z.axes.get_title().startswith("update")]
    assert len(ratio_marks) == 3 and all(len(z.get_xdata()) == 40 for z in ratio_marks)
    assert [list(z.get_xdata()) for z in zeros if z.axes.get_title().startswith("global")] == [[40]]
    labels = ratio_marks[0].axes.get_legend_handles_labels()[1]
    assert labels.count("0 (off the log scale)") == 1


def test_all_nonfinite_history_plots():
    h = fake_history(steps=1, diverged_at=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.plot_history(h)
        plots.figure_png(fig)
        plots.figure_png(plots.compare_histories({"dead on arrival": h}))
        ax = plots.plot_layer_profile([np.nan, np.inf, 1.0], ["dense0", "dense1", "head"])
        plots.figure_png(ax.figure)
    assert with_gid(fig, "nonfinite") and with_gid(fig, "diverged")


def test_clipping_is_drawn():
    h = fake_history(steps=150, clip_norm=2.0)
    fig = plots.plot_history(h)
    grad_ax = next(ax for ax in fig.axes if ax.get_title().startswith("global gradient norm"))
    labels = grad_ax.get_legend_handles_labels()[1]
    assert "clip_norm = 2" in labels
    (marks,) = with_gid(fig, "clipped")
    assert len(marks.get_xdata()) == int(h.clipped.sum()) > 0
    assert any(label.startswith(f"clipped ({int(h.clipped.sum())} of 150") for label in labels)


def _check_labelled(fig):
    """Every axes titled and labelled; log axes say so; step and layer axes use the project's words."""
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            assert "log scale" in ax.get_ylabel()
            continue
        assert ax.get_title(), ax
        assert ax.get_xlabel() in ("step", "layer (input -> output)"), ax.get_xlabel()
        assert ax.get_ylabel(), ax.get_title()
        if ax.get_yscale() == "log":
            assert "log scale" in ax.get_ylabel(), ax.get_ylabel()
        labelled = [h for h in ax.get_legend_handles_labels()[1]]
        if len(labelled) > 1:
            assert ax.get_legend() is not None, ax.get_title()
    width, _ = fig.get_size_inches()
    assert width <= 11 and 80 <= fig.dpi <= 100


def test_static_plots_are_titled_and_labelled():
    runs = {"lr=0.05": fake_history(steps=100, clip_norm=2.0), "lr=1": fake_history(steps=40, diverged_at=30)}
    stats = ActivationStats(
        layer_names=["dense0", "dense1", "dense2"],
        mean=np.array([0.5, 0.3, 0.1]),
        std=np.array([1.0, 0.5, 0.2]),
        dead_fraction=np.array([0.0, 0.1, 0.4]),
    )
    ax = plots.plot_layer_profile([1.0, 2.0, 4.0, 8.0], ["dense0", "dense1", "dense2", "head"], theory=[1, 2, 4, 8])
    figures = [
        plots.plot_history(runs["lr=1"], "run"),
        plots.compare_histories(runs, "two runs"),
        plots.plot_activation_stats(stats, "activations"),
        ax.figure,
    ]
    for fig in figures:
        _check_labelled(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["dense0", "dense1", "dense2", "head"]
    assert {"measured", "theory"} <= set(ax.get_legend_handles_labels()[1])
    cmp_labels = figures[1].axes[0].get_legend_handles_labels()[1]
    assert "lr=1 (diverged at step 30)" in cmp_labels
    assert len(with_gid(figures[1], "diverged")) == 3  # one dashed line per axes for the diverged run


def test_layer_profile_on_given_axes_and_checks_length():
    fig = plots.plot_history(fake_history())  # any figure with axes
    ax = fig.axes[0]
    assert plots.plot_layer_profile([1, 2, 3, 4], ["a", "b", "c", "d"], ax=ax) is ax
    with pytest.raises(ValueError, match="one number per layer"):
        plots.plot_layer_profile([1, 2], ["a", "b", "c"])


def test_figures_show_as_png_in_ipython_without_pyplot(fake_ipython):
    _, _, shell = fake_ipython
    fig = plots.plot_history(fake_history())
    data = shell.display_formatter.formatters["image/png"](fig)
    assert data.startswith(PNG_MAGIC)


def test_many_layers_and_steps_stay_readable():
    h = fake_history(steps=3000, layers=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # includes matplotlib's "loc='best' is slow" warning
        fig = plots.plot_history(h)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    heat = next(ax for ax in fig.axes if ax.get_ylabel() == "layer (input -> output)")
    assert 2 < len(heat.get_yticklabels()) <= 14
    assert all(re.fullmatch(r"dense\d+|head", t.get_text()) for t in heat.get_yticklabels())


def test_a_second_profile_on_the_same_axes_stays_inside_them():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    names = ["dense0", "dense1", "head"]
    plots.plot_layer_profile(np.array([1.0, 1.5, 2.0]), names, ax=ax)  # narrow: limits get widened and fixed
    plots.plot_layer_profile(np.array([100.0, 150.0, 200.0]), names, ax=ax, label="larger")
    low, high = ax.get_ylim()
    assert low <= 1.0 and high >= 200.0


def test_a_profile_with_nothing_finite_keeps_the_limits_of_earlier_profiles():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    names = ["dense0", "dense1", "head"]
    plots.plot_layer_profile(np.array([1.0, 5.0, 200.0]), names, ax=ax)
    plots.plot_layer_profile(np.array([np.nan, 0.0, np.inf]), names, ax=ax, label="diverged")
    low, high = ax.get_ylim()
    assert low <= 1.0 and 200.0 <= high < 1e3


# --- several seeds ------------------------------------------------------------------------------------


def fake_runs(n=3, *, diverged=()):
    """A SeedRuns of fake histories; seeds listed in `diverged` blow up at step 20 + seed."""
    histories = [
        fake_history(120, diverged_at=20 + s if s in diverged else None, seed=s, planned=120) for s in range(n)
    ]
    return SeedRuns(ModelConfig(), histories[0].config, tuple(range(n)), histories)


def test_seed_runs_draw_as_their_mean_and_min_max_band():
    runs = fake_runs(3)
    fig = plots.plot_history(runs, "three seeds")
    ax_loss = fig.axes[0]
    line = next(ln for ln in ax_loss.lines if ln.get_label() == "training loss, mean")
    np.testing.assert_allclose(line.get_ydata(), runs.stacked("loss").mean(0), rtol=1e-6)
    (band,) = ax_loss.collections
    low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert low == pytest.approx(runs.stacked("loss").min()) and high == pytest.approx(runs.stacked("loss").max())
    assert "seeds 0-2, mean and min-max" in fig._suptitle.get_text()
    assert runs.summary() in fig._suptitle.get_text()


def test_seed_runs_mark_each_diverged_seed_and_zoom_when_all_diverged():
    some = plots.plot_history(fake_runs(3, diverged=(1,)))
    lines = with_gid(some, "diverged")
    assert sorted({ln.get_xdata()[0] for ln in lines}) == [21]
    assert "1 of 3 seeds diverged" in some.axes[0].get_legend_handles_labels()[1]
    assert some.axes[0].get_xlim()[1] > 100  # the healthy seeds ran all their steps
    every = plots.plot_history(fake_runs(3, diverged=(0, 1, 2)))
    assert every.axes[0].get_xlim()[1] < 30


def test_compare_histories_mixes_runs_and_seed_runs():
    fig = plots.compare_histories({"one run": fake_history(120), "seeds": fake_runs(3, diverged=(2,))})
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "one run" in labels and "seeds (3 seeds, 1 diverged)" in labels
    assert "min-max over seeds; line: mean" in labels
    assert len(fig.axes[0].collections) >= 1


def test_compare_histories_draws_the_largest_update_ratio_per_step():
    """The third panel, the course's measure of an explosion: max over layers of ||update|| / ||W|| at each step,
    one run as itself, seeds as the mean of each seed's largest and their min-max band."""
    one, runs = fake_history(60, seed=3), fake_runs(3)
    fig = plots.compare_histories({"one": one, "seeds": runs})
    ax = fig.axes[2]
    assert ax.get_title() == "largest update ratio over the layers" and ax.get_yscale() == "log"
    drawn = [line.get_ydata() for line in ax.lines if line.get_gid() is None and len(line.get_ydata())]
    np.testing.assert_allclose(drawn[0], one.update_ratio.max(1), rtol=1e-6)
    per_seed = runs.stacked("update_ratio").max(-1)
    np.testing.assert_allclose(drawn[1], per_seed.mean(0), rtol=1e-6)
    band = ax.collections[-1].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.min(), per_seed.min()) and np.isclose(band.max(), per_seed.max())
    assert "~1e-3 (rule of thumb)" in ax.get_legend_handles_labels()[1]


def test_dashboard_follows_seed_runs_live(fake_ipython):
    full = fake_runs(2)
    dash = plots.Dashboard("live", max_redraws_per_s=0)
    for k in (40, 80, 120):
        partial = [prefix(h, k) for h in full.histories]
        dash.update(SeedRuns(full.model_config, full.config, full.seeds, partial))
    assert dash.redraws == 3 and "2 seeds, none diverged" in dash.figure._suptitle.get_text()


def test_layer_histograms_shift_by_the_growth_per_layer_and_count_zeros():
    """A layer whose values are 10x the previous one's is drawn one unit to the right on the log10 axis."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(4000)
    acts = [np.where(base > 0, base, 0) * 10.0**i for i in range(3)]  # ReLU-like: half exact zeros
    values = LayerValues(["dense0", "dense1", "dense2", "head"], acts, [base * 10.0**-i for i in range(4)])
    fig = plots.plot_layer_histograms(values, "histograms", layers=3)
    left, right = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["log10 |activation|", "log10 |gradient|"]
    assert all(ax.get_title() and ax.get_ylabel() == "density" for ax in fig.axes)
    labels = left.get_legend_handles_labels()[1]
    assert len(labels) == 3 and all(
        "50% zero" in label or "49% zero" in label or "51% zero" in label for label in labels
    )
    peaks = [p.get_path().vertices[:, 0][np.argmax(p.get_path().vertices[:, 1])] for p in left.patches]
    np.testing.assert_allclose(np.diff(peaks), 1.0, atol=0.15)
    shown = right.get_legend_handles_labels()[1]
    assert len(shown) == 3 and shown[0] == "dense0" and shown[-1] == "head"  # 3 of 4, first and last kept


def test_theory_vs_measurement_pairs_colours_and_draws_seeds_as_mean_and_band():
    """Two series and two theory lines: each line in its series' colour; (seeds, n) data as mean points + band."""
    x = np.array([1.0, 2.0, 4.0])
    seeds = np.array([[1.0, 4.0, 16.0], [3.0, 12.0, 48.0]])  # mean 2, 8, 32; min-max 1-3, 4-12, 16-48
    ax = plots.plot_theory_vs_measurement(
        {"a": (x, seeds), "b": (x, 5 * x)},
        {"a theory": (x, 2 * x**2), "b theory": (x, 5 * x)},
        xscale="log",
        xticks=x,
        title="t",
        xlabel="x",
        ylabel="y",
    )
    points = {line.get_label(): line for line in ax.lines if line.get_gid() != "theory"}
    theory = [line for line in ax.lines if line.get_gid() == "theory"]
    np.testing.assert_allclose(points["a (mean; band: min-max over 2 seeds)"].get_ydata(), [2, 8, 32])
    assert [to_rgb(t.get_color()) for t in theory] == [to_rgb(c) for c in plots.series(2)]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == 1.0 and band[:, 1].max() == 48.0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]
    assert ax.get_yscale() == "log" and ax.get_title() == "t"


def test_theory_vs_measurement_marks_a_seed_that_blew_up_and_checks_shapes():
    """A non-finite seed leaves the band, makes the mean non-finite (marked at the top), never raises."""
    x = np.arange(3.0)
    ax = plots.plot_theory_vs_measurement({"m": (x, np.array([[1.0, 2.0, np.inf], [1.0, 2.0, 3.0]]))}, {"t": (x, x)})
    assert any(line.get_gid() == "nonfinite" for line in ax.lines)
    assert to_rgb(ax.lines[-1].get_color()) == to_rgb(plots.COLORS["theory"])  # one series: theory colour
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isfinite(band).all() and band.max() == 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a step where every seed blew up: a gap and a mark, no warning
        plots.plot_theory_vs_measurement({"m": (x, np.array([[1.0, np.nan, 2.0], [1.0, np.inf, 3.0]]))})
    each = plots.plot_theory_vs_measurement({"m": (x, np.ones((4, 3)))}, each_seed=True, yscale="linear")
    assert len(each.lines) == 4 and each.get_legend_handles_labels()[1] == ["m"]
    with pytest.raises(ValueError, match="measured"):
        plots.plot_theory_vs_measurement({"m": (x, np.ones(4))})


def test_theory_vs_measurement_can_centre_on_the_rms_and_label_layers():
    """A mean-field theory predicts second moments: `center="rms"` draws sqrt(mean(y^2)) over the seeds."""
    x = np.arange(3.0)
    seeds = np.array([[3.0, 1.0, 0.0], [4.0, 1.0, 2.0]])
    ax = plots.plot_theory_vs_measurement({"m": (x, seeds)}, center="rms", layer_names=["in", "mid", "head"])
    (points,) = [line for line in ax.lines if line.get_label().startswith("m (RMS")]
    np.testing.assert_allclose(points.get_ydata(), [np.sqrt(12.5), 1.0, np.sqrt(2.0)])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["in", "mid", "head"]
    assert ax.get_xlabel() == plots.LAYER_AXIS
    with pytest.raises(ValueError, match="center"):
        plots.plot_theory_vs_measurement({"m": (x, seeds)}, center="median")


def test_seed_rows_put_a_point_per_seed_and_the_mean_on_each_row_in_order():
    rows = {"full recipe": [0.97, 0.99, 0.98], "no warmup": [0.90, 0.80, 0.85]}
    ax = plots.plot_seed_rows(rows, title="ablation")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["full recipe", "no warmup"]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # the first row on top
    seeds, means = ax.lines[0:4:2], ax.lines[1:4:2]
    np.testing.assert_allclose(seeds[1].get_xdata(), rows["no warmup"])
    np.testing.assert_allclose([m.get_xdata()[0] for m in means], [0.98, 0.85])
    assert list(seeds[1].get_ydata()) == [1, 1, 1]
    for bad in ({}, {"a": [0.9, np.nan]}, {"a": [[0.9]]}):
        with pytest.raises(ValueError, match="rows"):
            plots.plot_seed_rows(bad)
    ax = plots.plot_seed_rows(rows, reference="no warmup")
    (line,) = [line for line in ax.lines if line.get_gid() == "reference"]
    np.testing.assert_allclose(line.get_xdata(), [0.85, 0.85])
    with pytest.raises(ValueError, match="reference"):
        plots.plot_seed_rows(rows, reference="full")


def test_histograms_fill_one_sample_outline_several_and_bin_in_log():
    rng = np.random.default_rng(0)
    ax = plots.plot_histograms({"norms": 10 ** rng.normal(0, 1, 500)}, xscale="log", bins=30, title="t", xlabel="x")
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "count" and ax.get_title() == "t"
    assert len(ax.patches) == 30 and all(p.get_fill() for p in ax.patches)  # one filled bar per bin
    widths = [p.get_width() for p in ax.patches]
    assert widths[-1] > 10 * widths[0]  # even in log10: the bins widen to the right
    samples = {"a": rng.normal(0, 1, 300), "b": np.append(rng.normal(3, 1, 300), [np.nan, np.inf])}
    ax = plots.plot_histograms(samples, bins=np.linspace(-4, 7, 23), density=True)
    assert len(ax.patches) == 2 and not any(p.get_fill() for p in ax.patches)  # one outline per sample
    assert [to_rgb(p.get_edgecolor()) for p in ax.patches] == [to_rgb(c) for c in plots.series(2)]
    assert ax.get_ylabel() == "density" and ax.get_legend_handles_labels()[1] == ["a", "b"]
    assert plots.plot_histograms(samples, legend=False).get_legend() is None


def test_reference_lines_are_labelled_and_listed_in_the_legend():
    ax = plots.plot_theory_vs_measurement({"m": (np.arange(3.0), np.array([1.0, 2.0, 4.0]))})
    assert plots.reference_lines(ax, x={"edge": 1.5}, y={"threshold": 2.0}, color="red", ls="--") is ax
    lines = [line for line in ax.lines if line.get_gid() == "reference"]
    assert [line.get_label() for line in lines] == ["edge", "threshold"]
    assert list(lines[0].get_xdata()) == [1.5, 1.5] and list(lines[1].get_ydata()) == [2.0, 2.0]
    assert all(to_rgb(line.get_color()) == to_rgb("red") and line.get_linestyle() == "--" for line in lines)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["m", "edge", "threshold"]


def test_open_points_take_the_series_colours_and_widen_the_log_axis():
    x = np.array([1.0, 2.0, 3.0])
    ax = plots.plot_theory_vs_measurement({"a": (x, x), "b": (x, 2 * x)}, title="t")
    plots.add_open_points(ax, {"a, other norm": (x, 1e4 * x), "b, other norm": (x, [1.0, np.inf, 3.0])})
    a, b = ax.lines[-3], ax.lines[-2]  # the last line is b's cross at the top for its Inf
    assert [to_rgb(line.get_color()) for line in (a, b)] == [to_rgb(c) for c in plots.series(2)]
    assert all(line.get_markerfacecolor() == "none" for line in (a, b))
    assert ax.lines[-1].get_gid() == "nonfinite"
    assert ax.get_ylim()[1] >= 3e4  # the axis grew to hold the new points
    assert "b, other norm" in [t.get_text() for t in ax.get_legend().get_texts()]
