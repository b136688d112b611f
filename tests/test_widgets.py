"""Tests for helpers/widgets.py: every control, one run per change, no recompilation, config strings, ipywidgets 7.

Small model and few steps throughout: the point is the wiring, not the training.
"""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import ipywidgets as w
import nbformat
import pytest

from helpers import plots, widgets
from helpers.data import load_digits
from helpers.models import ModelConfig
from helpers.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MODEL = ModelConfig(depth=2, width=16)
CONFIG = TrainConfig(steps=20, chunk_steps=10, batch_size=32)
IPYWIDGETS_7 = "7.8.5"  # the last 7.x release on PyPI (Colab has shipped 7.7.1)


@pytest.fixture(scope="module")
def data():
    return load_digits(seed=0)


def light_plot(history, fig):
    """A cheap plot for tests about training and controls (the dashboard is drawn in the first test)."""
    fig.subplots().plot(history.loss)


@pytest.fixture
def every(data):
    """A panel with every control (and a cheap plot)."""
    return widgets.panel(
        data, model=MODEL, config=CONFIG, controls=list(widgets.CONTROLS), plot=light_plot, figsize=(3, 2)
    )


def readout(p) -> tuple[str, str]:
    """The two config strings the panel shows, as a user would copy them."""
    codes = re.findall(r"<code>(.*?)</code>", p._readout.value)
    assert len(codes) == 2, p._readout.value
    return html.unescape(codes[0]), html.unescape(codes[1])


def test_every_control_is_built_with_the_project_vocabulary(data):
    every = widgets.panel(data, model=MODEL, config=CONFIG, controls=list(widgets.CONTROLS), title="all controls")
    assert list(every.controls) == list(widgets.CONTROLS)
    assert "all controls" in every.widget.children[0].value
    assert len(every.figure.axes) == 5, "the default plot is the dashboard"
    shown = every.widget.children[1].children
    for (name, control), box in zip(every.controls.items(), shown, strict=True):
        assert box is control.widget
        assert control.slider.description == name
        if hasattr(control.slider, "continuous_update"):
            assert control.slider.continuous_update is False, name
    for name in ("lr", "clip_norm", "l2", "weight_decay"):
        assert isinstance(every.controls[name].slider, w.FloatLogSlider), name
    assert every.history is not None and every.history.config == every.config
    assert bytes(every._image.value).startswith(b"\x89PNG")
    assert "Panel(controls=depth, width" in every._repr_mimebundle_()["text/plain"]
    view = every._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == every.widget.model_id
    still = base64.b64decode(every._repr_mimebundle_()["image/png"])
    assert still == bytes(every._image.value), "a page without a kernel shows the plot as a still"


def test_continuous_controls_rerun_without_recompiling(every):
    for change in (
        {"lr": 0.2},
        {"lr": 0.02},
        {"init_scale": 1.4},
        {"clip_norm": 2.0},  # switching clipping on changes the program: compiles once ...
        {"clip_norm": 0.5},  # ... moving the threshold does not
        {"loss_scale": 1024.0},  # so does switching a fixed loss scale on ...
        {"loss_scale": 64.0},  # ... and moving it does not
        {"l2": 1e-4},
        {"weight_decay": 1e-3},
        {"warmup_steps": 10},
        {"steps": 30},
        {"seed": 3},
    ):
        history = every.set(**change)
        if change in ({"clip_norm": 2.0}, {"loss_scale": 1024.0}):
            continue
        assert every.compiles == 0, f"{change} recompiled"
        assert history is every.history and history.config == every.config
    assert every.config.lr == 0.02 and every.config.clip_norm == 0.5 and every.config.steps == 30
    assert every.config.loss_scale == 64.0 and (every.history.loss_scale == 64.0).all()
    assert every.model.init_scale == 1.4 and every.model.seed == every.config.seed == 3


def test_a_depth_change_is_counted_as_a_compilation(data):
    p = widgets.panel(data, model=MODEL, config=CONFIG, controls=["depth"], plot=light_plot)
    p.set(depth=MODEL.depth + 1)
    assert p.compiles > 0, "the compile counter must see a new program (else the no-recompile test proves nothing)"
    assert p.model.depth == MODEL.depth + 1 and len(p.history.layer_names) == MODEL.depth + 2


def test_config_strings_round_trip(every):
    # Only values that reuse the compiled step (a new activation, optimizer, ... would compile: slow, not the point).
    every.set(lr=0.5, l2=1e-3, weight_decay=1e-4, init="xavier", init_scale=0.8, warmup_steps=10, seed=2)
    model_text, config_text = readout(every)
    assert ModelConfig.parse(model_text) == every.model
    assert TrainConfig.parse(config_text) == every.config
    assert "lr=0.5" in config_text and "init=xavier" in model_text
    every.set(l2=0.0)
    model_text, config_text = readout(every)
    assert TrainConfig.parse(config_text) == every.config and "l2" not in config_text


def test_set_runs_once_and_redraws(every, monkeypatch):
    runs = []
    original = every._run
    monkeypatch.setattr(every, "_run", lambda *a, **k: runs.append(1) or original(*a, **k))
    image = bytes(every._image.value)
    every.set(lr=0.3, l2=1e-3, seed=1)
    assert len(runs) == 1, "set() with several values runs once"
    assert bytes(every._image.value) != image and every.history.config == every.config


def test_a_user_change_shows_progress_at_once_and_trains_in_the_background(data):
    p = widgets.panel(
        data, model=MODEL, config=CONFIG.replace(steps=400), controls=["lr", "clip_norm"], plot=light_plot
    )
    statuses = []
    p._status.observe(lambda change: statuses.append(change["new"]), names="value")
    image = bytes(p._image.value)
    p.controls["lr"].slider.value = 0.25  # what the browser sends when a slider is released
    assert statuses[0].startswith("<b>training\u2026 step 0 / 400</b>"), "the panel must say at once that it trains"
    assert "lr=0.25" in readout(p)[1], "the config line shows the new value at once"
    assert p.wait(60), "the background run did not end"
    assert p.config.lr == 0.25 and p.history.config.lr == 0.25
    progress = [s for s in statuses if "step" in s and "step 0 /" not in s and "training" in s]
    assert progress, f"no progress shown during the run: {statuses}"
    assert "steps, final loss" in statuses[-1] and "s training" in statuses[-1], statuses[-1]
    assert bytes(p._image.value) != image
    p.controls["clip_norm"].switch.value = True  # ticking "on"
    assert p.wait(60) and p.config.clip_norm == 1.0 and "clip_norm=1" in readout(p)[1]
    p.controls["clip_norm"].switch.value = False
    assert p.wait(60) and p.config.clip_norm is None and p.controls["clip_norm"].slider.disabled


def test_changes_during_a_run_are_not_lost_the_last_value_wins(data):
    p = widgets.panel(data, model=MODEL, config=CONFIG.replace(steps=2000), controls=["lr"], plot=light_plot)
    finished = []
    original = p._run
    p._run = lambda *a, **k: finished.append(original(*a, **k).config.lr) or p.history
    for lr in (0.02, 0.03, 0.04, 0.05):
        p.controls["lr"].slider.value = lr
    assert p.wait(120)
    assert p.config.lr == p.history.config.lr == 0.05
    assert finished[-1] == 0.05 and len(finished) < 4, f"superseded runs should stop early: {finished}"


def test_a_change_that_compiles_says_so(data):
    p = widgets.panel(data, model=MODEL, config=CONFIG, controls=["depth", "lr"], plot=light_plot)
    p.controls["depth"].slider.value = MODEL.depth + 3
    assert "compiling" in p._status.value
    assert p.wait(120) and p.compiles > 0
    p.controls["lr"].slider.value = 0.1
    assert "compiling" not in p._status.value
    assert p.wait(60) and p.compiles == 0


def test_log_sliders_have_20_positions_per_decade_read_as_round_numbers_and_take_typed_values(every):
    lr = every.controls["lr"].slider
    assert lr.step == 0.05, "20 positions per decade"
    lr.value = 10**-1.3  # a position of the slider
    assert every.wait(60) and every.config.lr == 0.05 and lr.value == 0.05
    lr.value = 0.0123  # typed into the readout
    assert every.wait(60) and every.config.lr == 0.0123
    every.controls["init_scale"].slider.value = 10**0.15  # init_scale is a log slider too: 1.4
    assert every.wait(60) and every.model.init_scale == 1.4
    assert every.controls["init_scale"].slider.max >= 1.5, "a 10x-too-large initialisation must be reachable"


def test_set_refuses_what_a_user_could_not_do(every):
    with pytest.raises(ValueError, match="outside"):
        every.set(lr=100.0)
    with pytest.raises(ValueError, match="not one of"):
        every.set(optimizer="lion")
    with pytest.raises(ValueError, match="not among"):
        widgets.panel(every.data, model=MODEL, config=CONFIG, controls=["lr"], plot=light_plot).set(depth=3)
    with pytest.raises(ValueError, match="unknown"):
        widgets.panel(every.data, model=MODEL, config=CONFIG, controls=["learning_rate"])
    with pytest.raises(ValueError, match="plot must be"):
        widgets.panel(every.data, model=MODEL, config=CONFIG, controls=["lr"], plot="heatmap")
    with pytest.raises(ValueError, match="no position"):  # dynamic loss scaling is a word, not a slider value
        every.set(loss_scale="dynamic")
    with pytest.raises(ValueError, match="no position"):
        widgets.panel(every.data, model=MODEL, config=CONFIG.replace(loss_scale="dynamic"), controls=["loss_scale"])


def test_errors_from_a_user_change_are_shown_not_lost(data):
    def broken(history, fig):
        raise RuntimeError("plot failed")

    p = widgets.panel(data, model=MODEL, config=CONFIG, controls=["lr"], plot=light_plot)
    p._plot = broken
    p.controls["lr"].slider.value = 0.1
    assert p.wait(60) and "RuntimeError: plot failed" in p._status.value


def test_plot_callable_gets_a_cleared_figure(data):
    calls = []

    def plot(history, fig):
        calls.append(history)
        fig.subplots().plot(history.loss)

    p = widgets.panel(data, model=MODEL, config=CONFIG, controls=["lr"], plot=plot)
    first = len(calls)
    p.set(lr=0.1)
    assert calls[first - 1].done and calls[-1] is p.history, "each run ends with a drawing of the finished run"
    assert all(not h.done for h in calls[first:-1]), "the others are live drawings of the run so far"
    assert len(p.figure.axes) == 1


# ----------------------------------------------------------------------------------------------------------
# Other environments: ipywidgets 7 (Colab) and a headless kernel under nbval
# ----------------------------------------------------------------------------------------------------------


def _ipywidgets7() -> Path:
    """ipywidgets 7 in its own directory (installed once, kept under the system temp dir); skip without network."""
    target = Path(tempfile.gettempdir()) / f"taming-gradients-ipywidgets-{IPYWIDGETS_7}"
    if (target / "ipywidgets").is_dir():
        return target
    partial = Path(tempfile.mkdtemp(prefix="ipywidgets7-"))
    # --no-deps: everything else (IPython, traitlets, comm) must come from the pinned environment, as on Colab.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(partial)]
        + [f"ipywidgets=={IPYWIDGETS_7}", "ipython_genutils==0.2.0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        offline = re.search(r"(?i)connection|network|resolve|No matching distribution|temporary failure", result.stderr)
        if offline:
            pytest.skip(f"cannot install ipywidgets {IPYWIDGETS_7} (no network?): {result.stderr.strip()[-300:]}")
        pytest.fail(f"pip install ipywidgets {IPYWIDGETS_7} failed:\n{result.stderr}")
    try:
        partial.rename(target)
    except OSError:  # another test run got there first
        pass
    return target


@pytest.mark.slow
def test_every_control_works_under_ipywidgets_7():
    site = _ipywidgets7()
    script = textwrap.dedent(
        f"""
        import ipywidgets
        assert ipywidgets.__version__ == "{IPYWIDGETS_7}", ipywidgets.__version__
        from helpers import widgets
        from helpers.data import load_digits
        from helpers.models import ModelConfig
        from helpers.train import TrainConfig

        def plot(history, fig):
            fig.subplots().plot(history.loss)

        p = widgets.panel(load_digits(), model=ModelConfig.parse("{MODEL}"), config=TrainConfig.parse("{CONFIG}"),
                          controls=list(widgets.CONTROLS), plot=plot, figsize=(3, 2))
        first = p.history
        p.controls["lr"].slider.value = 0.2          # a user moves a slider
        assert p.wait(60) and p.history is not first and p.config.lr == 0.2, p.config
        p.controls["l2"].switch.value = True          # and ticks a checkbox
        assert p.wait(60) and p.config.l2 == 0.001, p.config
        p.set(init_scale=1.5, init="xavier")
        assert p.model.init_scale == 1.5 and bytes(p._image.value).startswith(b"\\x89PNG")
        assert p._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]
        print("OK", ipywidgets.__version__)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and f"OK {IPYWIDGETS_7}" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_dashboard_and_panel_pass_nbval_in_a_headless_kernel(tmp_path, monkeypatch):
    """nbval runs these cells in a fresh kernel and compares each output with the one written here.

    One output per cell with a stable text/plain: the dashboard's figure (shown once, then updated in
    place; nbval ignores the updates), the panel's widget view, and a print.
    """
    width, height = (round(v * plots.DPI) for v in plots.DASHBOARD_SIZE)
    figure = {"text/plain": f"<Figure size {width}x{height} with 5 Axes>", "image/png": "iVBORw0KGgo="}
    panel_view = {"version_major": 2, "version_minor": 0, "model_id": "any"}
    cells = [
        (
            f"""
            from helpers import plots, widgets
            from helpers.data import load_digits
            from helpers.models import ModelConfig
            from helpers.train import TrainConfig, train
            data = load_digits()
            model, config = ModelConfig.parse("{MODEL}"), TrainConfig.parse("{CONFIG}")
            """,
            [],
        ),
        (
            """
            dash = plots.Dashboard("live", max_redraws_per_s=1000)
            history = train(model.build(data.image_shape), data, config, on_chunk=dash.update)
            fig = dash.finish(history)
            assert dash.redraws == 2
            assert "image/png" in get_ipython().display_formatter.format(fig)[0], "no PNG without pyplot"
            """,
            [nbformat.v4.new_output("display_data", data=figure)],
        ),
        (
            """
            p = widgets.panel(data, model=model, config=config, controls=["lr", "clip_norm", "depth"], title="panel")
            p
            """,
            [
                nbformat.v4.new_output(
                    "execute_result",
                    data={
                        "text/plain": "Panel(controls=lr, clip_norm, depth)",
                        "image/png": "iVBORw0KGgo=",
                        "application/vnd.jupyter.widget-view+json": panel_view,
                    },
                    execution_count=3,
                )
            ],
        ),
        (
            """
            history = p.set(lr=0.3)
            print(history.config.lr, p.compiles)
            """,
            [nbformat.v4.new_output("stream", name="stdout", text="0.3 0\n")],
        ),
    ]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, (source, outputs) in enumerate(cells, start=1):
        nb.cells.append(nbformat.v4.new_code_cell(textwrap.dedent(source).strip(), execution_count=i, outputs=outputs))
    path = tmp_path / "panel_check.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0 and "4 passed" in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]


def test_a_failed_run_shows_its_diagnosis_in_the_status_and_a_dashboard_shows_one_it_is_given(data):
    p = widgets.panel(data, model=MODEL.replace(depth=8, width=64), config=CONFIG.replace(lr=0.05), controls=["lr"])
    assert p.diagnosis is None and "diagnosis" not in p._status.value, "a healthy run has no diagnosis"
    p.set(lr=5.0)
    assert p.history.diverged_at is not None, "lr 5 should diverge"
    assert p.diagnosis is not None and p.diagnosis.cause == "learning_rate", p.diagnosis
    assert html.escape(p.diagnosis.line) in p._status.value, p._status.value
    title = plots.plot_history(p.history, diagnosis=p.diagnosis)._suptitle.get_text()
    assert "diagnosis: learning_rate" in title, "a dashboard shows a diagnosis it is given"
    p.set(lr=0.05)
    assert p.diagnosis is None and "diagnosis" not in p._status.value


def test_a_seed_panel_diagnoses_the_first_seed_that_failed(data):
    p = widgets.panel(data, model=MODEL, config=CONFIG.replace(lr=0.05, steps=10), controls=["lr"], seeds=[0, 1])
    assert p.diagnosis is None
    p.set(lr=10.0)
    assert p.diagnosis is not None and p.diagnosis.cause != "none", p.diagnosis
