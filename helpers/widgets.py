"""Slider panels: every control edits one field of a `ModelConfig` or `TrainConfig`, and each change re-runs training::

    p = panel(data, model=ModelConfig(depth=8), config=TrainConfig(steps=100), controls=["lr", "clip_norm"])
    p                       # the controls, the config strings of the run, its status and its dashboard

`p.model` / `p.config` are the current values, `p.history` the last run, `p.set(lr=0.3)` moves a control as a
user would and re-runs. Continuous knobs (lr, clip_norm, l2, weight_decay, warmup_steps, init_scale, steps,
seed) re-use the compiled training step: they are data, not program (see helpers.train). depth, width,
activation, batchnorm, residual, optimizer and clip_mode change the program and compile once per new value.

A change made in the browser trains on a background thread, so the panel stays live: it says at once that it is
training (and compiling, when the change needs a new program), redraws after every chunk of steps (at most
`REDRAWS_PER_S` times a second, and not when the run will end within two redraws' time), and ends with the result
and the time taken. A change made while a run is going stops that run after its current chunk and starts the new
one: the last value wins.

Only API common to ipywidgets 7 (which Colab has shipped) and 8 is used. The plot is an `ipywidgets.Image` of
PNG bytes: it redraws in JupyterLab, Colab and classic Notebook alike, and needs no Output widget (whose
captured prints break nbval) and no ipympl.
"""

from __future__ import annotations

import base64
import functools
import html
import math
import threading
import time
from collections.abc import Callable, Sequence

import ipywidgets as w
from matplotlib.figure import Figure

from helpers import plots
from helpers.compiles import CompileCounter
from helpers.config import Field, fields
from helpers.diagnose import Diagnosis, diagnose
from helpers.models import ModelConfig
from helpers.train import History, SeedRuns, TrainConfig, is_compiled, train, train_seeds

__all__ = ["CONTROLS", "Panel", "panel"]

#: A running panel redraws its plot at most this often (a dashboard and its PNG take 0.1-0.5 s on 2 cores).
REDRAWS_PER_S = 4

# ----------------------------------------------------------------------------------------------------------
# Controls: one widget per config field
# ----------------------------------------------------------------------------------------------------------

_STYLE = {"description_width": "100px"}
_WIDTH = "380px"


#: A log slider moves in steps of 10**LOG_STEP: 20 positions per decade.
LOG_STEP = 0.05


def _nice(value: float) -> float:
    """A log slider's value as the config reads it: a slider position to 2 significant digits, a typed value exactly.

    The positions 10**(k/20) then read 1, 1.1, 1.3, 1.4, 1.6, 1.8, 2, 2.2, 2.5, 2.8, 3.2, 3.5, 4, 4.5, 5, 5.6, 6.3,
    7.1, 7.9, 8.9 (the R20 series of preferred numbers), so configs read lr=0.05, not lr=0.0501187; a value
    typed into the readout (lr=0.0123) is anywhere else and is kept as typed.
    """
    steps = math.log10(value) / LOG_STEP
    return float(f"{value:.2g}") if abs(steps - round(steps)) < 1e-6 else float(value)


def _log_slider(name: str, value: float, low: float, high: float) -> w.FloatLogSlider:
    """A base-10 log slider from 10**low to 10**high (widened to hold `value`), 20 positions per decade."""
    exponent = math.log10(value)
    return w.FloatLogSlider(
        value=value,
        base=10,
        min=min(low, math.floor(exponent)),
        max=max(high, math.ceil(exponent)),
        step=LOG_STEP,
        description=name,
        readout_format=".4g",
        continuous_update=False,
        style=_STYLE,
        layout=w.Layout(width=_WIDTH),
    )


def _int_slider(name: str, value: int, low: int, high: int, step: int = 1) -> w.IntSlider:
    return w.IntSlider(
        value=value,
        min=min(low, value),
        max=max(high, value),
        step=step,
        description=name,
        continuous_update=False,
        style=_STYLE,
        layout=w.Layout(width=_WIDTH),
    )


def _dropdown(name: str, value, options: Sequence) -> w.Dropdown:
    layout = w.Layout(width="260px")
    return w.Dropdown(value=value, options=list(options), description=name, style=_STYLE, layout=layout)


class _Control:
    """One control. `widget` is what is shown; `value` is the config value it stands for.

    Optional values (clip_norm, l2, weight_decay) pair a log slider with an "on" checkbox (`switch_on` is its
    first state): off means `off_value` (None for clip_norm: no clipping; 0.0 for l2 and weight_decay).
    """

    def __init__(self, name, target, slider, to_config: Callable = lambda v: v, switch_on=None, off_value=None):
        self.name = name
        self.target = target  # "model", "train" or "both" (seed)
        self.slider = slider
        self.to_config = to_config
        self.off_value = off_value
        self.switch = None
        self.widget = slider
        if switch_on is not None:
            self.switch = w.Checkbox(value=switch_on, description="on", indent=False, layout=w.Layout(width="60px"))
            self.slider.disabled = not switch_on
            self.switch.observe(lambda change: setattr(self.slider, "disabled", not change["new"]), names="value")
            self.widget = w.HBox([slider, self.switch])

    @property
    def value(self):
        if self.switch is not None and not self.switch.value:
            return self.off_value
        return self.to_config(self.slider.value)

    @value.setter
    def value(self, value) -> None:
        if self.switch is not None:
            on = value is not None and value != self.off_value
            if on:
                self.slider.value = self._checked(value)
            self.switch.value = on
        else:
            self.slider.value = self._checked(value)

    def _checked(self, value):
        """`value` if a user could pick it with this widget, else ValueError (no silent clamping)."""
        s = self.slider
        if isinstance(value, str) and not hasattr(s, "options"):  # loss_scale="dynamic": a word, not a position
            raise ValueError(f"{self.name}={value!r} has no position on this control: set it in the config")
        if isinstance(s, w.FloatLogSlider):
            low, high = s.base**s.min, s.base**s.max
        elif hasattr(s, "options"):
            if value not in list(s.options):
                raise ValueError(f"{self.name}: {value!r} is not one of {list(s.options)}")
            return value
        elif hasattr(s, "min"):
            low, high = s.min, s.max
        else:
            return value
        if not low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
            raise ValueError(f"{self.name}={value!r} is outside this control's range [{low:g}, {high:g}]")
        return value

    def observe(self, handler: Callable) -> None:
        self.slider.observe(handler, names="value")
        if self.switch is not None:
            self.switch.observe(handler, names="value")


def _control(name: str, target: str, field: Field, value) -> _Control:
    """The control `field.control` describes, showing `value`."""
    kind, *args = field.control
    if isinstance(value, str) and value in field.words:
        raise ValueError(f"{name}={value!r} has no position on this control: set it in the config")
    if kind == "log" and len(args) == 3:  # an optional knob: a log slider with an "on" checkbox
        low, high, resting = args
        off_value = None if field.optional else 0.0
        on = value is not None and value != off_value
        slider = _log_slider(name, value if on else resting, low, high)
        return _Control(name, target, slider, _nice, switch_on=on, off_value=off_value)
    if kind == "log":
        return _Control(name, target, _log_slider(name, value, *args), _nice)
    if kind == "int":
        return _Control(name, target, _int_slider(name, value, *args), int)
    if kind == "options":
        options = sorted({*args[0], value})
        slider = w.SelectionSlider(
            value=value,
            options=options,
            description=name,
            continuous_update=False,
            style=_STYLE,
            layout=w.Layout(width=_WIDTH),
        )
        return _Control(name, target, slider, int)
    if kind == "checkbox":
        return _Control(name, target, w.Checkbox(value=value, description=name, indent=False), bool)
    return _Control(name, target, _dropdown(name, value, field.choices))


def _controls() -> dict[str, Callable[[ModelConfig, TrainConfig], _Control]]:
    """Every field of ModelConfig and TrainConfig that has a control. A field of both (seed) sets both."""
    model_fields, train_fields = fields(ModelConfig), fields(TrainConfig)
    out = {}
    for name, field in {**model_fields, **train_fields}.items():
        if field.control is not None:
            in_model, in_train = name in model_fields, name in train_fields
            target = "both" if in_model and in_train else "model" if in_model else "train"
            out[name] = functools.partial(_field_control, name, target, field)
    return out


def _field_control(name: str, target: str, field: Field, model: ModelConfig, config: TrainConfig) -> _Control:
    return _control(name, target, field, getattr(config if target == "train" else model, name))


#: Every control a panel can show: name -> factory(model, config) -> _Control. Names are config fields; what
#: each control is (a log slider over which decades, ...) is part of the field's description (helpers.config).
CONTROLS = _controls()


# ----------------------------------------------------------------------------------------------------------
# The panel
# ----------------------------------------------------------------------------------------------------------


class _Superseded(Exception):
    """A newer change arrived while this run was going: stop it (after its current chunk) and start the new one."""


class Panel:
    """Controls + the config strings of the current run + its status + its plot; each change re-runs training once.

    Attributes: `widget` (the ipywidgets box; the Panel also displays itself), `model`, `config` (current
    values), `history` (last run: a History, or a SeedRuns with `seeds`), `net` (the trained network of the last
    run; the first seed's with `seeds`), `diagnosis` (`helpers.diagnose` of the last run if it failed, else None),
    `figure` (the one Figure, redrawn each run), `compiles` (XLA
    compilations during the last run), `seconds` (its timings: "train", "draw", "total").
    """

    def __init__(
        self,
        data,
        *,
        model: ModelConfig,
        config: TrainConfig,
        controls: Sequence[str],
        plot: str | Callable[[History, Figure], object] = "dashboard",
        title: str = "",
        figsize: tuple[float, float] | None = None,
        seeds: Sequence[int] | None = None,
    ):
        unknown = [name for name in controls if name not in CONTROLS]
        if unknown:
            raise ValueError(f"controls: unknown {unknown}; choose from {list(CONTROLS)}")
        if plot != "dashboard" and not callable(plot):
            raise ValueError(f"plot must be 'dashboard' or a callable (history, figure), got {plot!r}")
        if seeds is not None and "seed" in controls:
            raise ValueError("controls: 'seed' and seeds= exclude each other (seeds= trains every seed listed)")
        self.data = data
        self.model = model
        self.config = config
        self.seeds = None if seeds is None else tuple(seeds)
        self.title = title
        self.history: History | SeedRuns | None = None
        self.net = None
        self.diagnosis: Diagnosis | None = None
        self.compiles = 0
        self.seconds: dict[str, float] = {}
        self._plot = plot
        self.figure = Figure(figsize=figsize or plots.DASHBOARD_SIZE, dpi=plots.DPI)
        self._draw_seconds = 0.0  # how long the last redraw took
        self.controls = {name: CONTROLS[name](model, config) for name in dict.fromkeys(controls)}
        self._quiet = False
        self._lock = threading.Lock()  # guards the request counters below
        self._running = threading.Lock()  # one run at a time
        self._idle = threading.Event()
        self._idle.set()
        self._requested = 0  # numbered requests for a run; the newest wins
        self._finished = 0  # the newest request whose run has ended (or failed)
        self._structures: set = set()  # model structures and optimizers this panel has trained
        for control in self.controls.values():
            control.observe(self._on_change)
        self._readout = w.HTML()
        self._status = w.HTML()
        self._image = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        head = [w.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        boxes = w.HBox([c.widget for c in self.controls.values()], layout=w.Layout(flex_flow="row wrap"))
        self.widget = w.VBox([*head, boxes, self._readout, self._status, self._image])
        self.run()

    # -- what a caller does: run now, set controls, wait for a background run

    def run(self) -> History | SeedRuns:
        """Build the network from `model`, train it with `config`, redraw, on this thread; returns the run."""
        return self._run(self._request())

    def set(self, **values) -> History | SeedRuns:
        """Move controls as a user would (e.g. `set(lr=0.3, clip_norm=None)`), then re-run once, on this thread."""
        unknown = [name for name in values if name not in self.controls]
        if unknown:
            raise ValueError(f"set: {unknown} not among this panel's controls {list(self.controls)}")
        self._quiet = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._quiet = False
        self._read_controls()
        return self.run()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no background run is going (True), or `timeout` seconds have passed (False)."""
        return self._idle.wait(timeout)

    # -- a change in the browser: show it at once, train on a background thread

    def _on_change(self, change) -> None:
        if self._quiet:
            return
        try:
            self._read_controls()
        except Exception as error:  # an invalid combination: shown in the panel, not lost in the kernel log
            self._show_error(error)
            return
        self._show_config()
        self._show_progress(0, compiling=not self._compiled())
        self._request()
        with self._lock:
            start = self._idle.is_set()
            self._idle.clear()
        if start:  # else the running worker stops its run after this chunk and takes this request
            threading.Thread(target=self._work, name="panel-run", daemon=True).start()

    def _work(self) -> None:
        """Run the newest request until no newer one is waiting."""
        while True:
            with self._lock:
                request = self._requested
                if self._finished >= request:
                    self._idle.set()
                    return
            try:
                self._run(request, supersedable=True)
            except _Superseded:
                continue
            except Exception as error:  # shown in the panel: a widget callback has nowhere to raise
                self._show_error(error)
                with self._lock:
                    self._finished = max(self._finished, request)

    def _request(self) -> int:
        with self._lock:
            self._requested += 1
            return self._requested

    # -- one run

    def _run(self, request: int, supersedable: bool = False) -> History | SeedRuns:
        with self._running:
            if self._finished >= request:  # a newer run (e.g. `set` on the caller's thread) has done it already
                return self.history
            model, config = self.model, self.config
            start, last_draw = time.perf_counter(), -math.inf

            def on_chunk(run):
                nonlocal last_draw
                if supersedable and self._requested != request:
                    raise _Superseded
                if not run.done:
                    self._show_progress(run.steps)
                    now = time.perf_counter()
                    # A live frame delays the run by a whole redraw: skip it when the run will end (and be drawn)
                    # in less than two redraws' time anyway.
                    left = (now - start) / max(run.steps, 1) * (config.steps - run.steps)
                    if now - last_draw >= 1 / REDRAWS_PER_S and left > 2 * self._draw_seconds:
                        self._draw(run)
                        last_draw = time.perf_counter()

            self._structures.add(
                (
                    model.replace(seed=0, init_scale=1.0),
                    config.optimizer,
                    config.clip_mode,
                    config.clip_norm is None,
                    config.skip_nonfinite,
                )
            )
            with CompileCounter() as compiles:
                if self.seeds is None:
                    net = model.build(self.data.image_shape, self.data.num_classes)
                    run = train(net, self.data, config, on_chunk=on_chunk)
                else:
                    run = train_seeds(model, self.data, config, self.seeds, on_chunk=on_chunk)
                    net = run.models[0]
            trained = time.perf_counter()
            self._draw(run)
            self.net, self.history, self.compiles, self.diagnosis = net, run, compiles.count, None
            self.seconds = {"train": trained - start, "draw": self._draw_seconds}  # the final redraw
            self.seconds["total"] = time.perf_counter() - start
            self._show_config()
            self._show_result(run)
            # the plot is up; a failed run's diagnosis follows in the status line (its measurements take 0.05-2 s)
            superseded = supersedable and self._requested != request
            self.diagnosis = None if superseded else self._diagnose(run, net)
            self._show_result(run)
            with self._lock:
                self._finished = max(self._finished, request)
            return run

    def _show_result(self, run) -> None:
        compiled = "compiled the training step" if self.compiles else "no recompilation"
        diagnosed = f"<br><b>diagnosis</b> {html.escape(self.diagnosis.line)}" if self.diagnosis else ""
        self._status.value = (
            f"{html.escape(run.summary())}{diagnosed} <span style='color:gray'>({compiled}; "
            f"{self.seconds['train']:.2f} s training, {self.seconds['draw']:.2f} s drawing)</span>"
        )

    def _compiled(self) -> bool:
        """Is the training step for the current model structure and optimizer compiled already?

        A structure this panel has run is (the cache keeps recent ones); a new one is looked up, which builds it.
        """
        structure = (
            self.model.replace(seed=0, init_scale=1.0),
            self.config.optimizer,
            self.config.clip_mode,
            self.config.clip_norm is None,
            self.config.skip_nonfinite,
        )
        if structure not in self._structures:
            net = self.model.build(self.data.image_shape, self.data.num_classes)
            if not is_compiled(net, self.config):
                return False
            self._structures.add(structure)
        return True

    # -- what the panel shows

    def _diagnose(self, run, net) -> Diagnosis | None:
        """The diagnosis of a failed run (with seeds, of the first seed that failed): one that diverged, or whose
        cause diagnose names; None otherwise (a run still on its way down is not shown as a failure)."""
        runs = [(run, net)] if isinstance(run, History) else zip(run.histories, run.models, strict=True)
        for history, net in runs:
            found = diagnose(history, net, self.data)
            if found.cause != "none" or history.diverged_at is not None:  # a cause, or at least a divergence
                return found
        return None

    def _draw(self, run) -> None:
        start = time.perf_counter()
        if self._plot == "dashboard":
            plots.draw_dashboard(run, self.figure, self.title)
        else:
            self.figure.clear()
            self._plot(run, self.figure)
        self._image.value = plots.figure_png(self.figure)
        self._draw_seconds = time.perf_counter() - start

    def _show_config(self) -> None:
        seeds = f" <span style='color:gray'>(seeds {', '.join(map(str, self.seeds))})</span>" if self.seeds else ""
        self._readout.value = (
            f"<b>ModelConfig</b> <code>{html.escape(str(self.model))}</code><br>"
            f"<b>TrainConfig</b> <code>{html.escape(str(self.config))}</code>{seeds}"
        )

    def _show_progress(self, steps: int, compiling: bool = False) -> None:
        note = " (compiling the training step for this network first: a few seconds, once)" if compiling else ""
        self._status.value = f"<b>training\u2026 step {steps} / {self.config.steps}</b>{note}"

    def _show_error(self, error: Exception) -> None:
        message = html.escape(f"{type(error).__name__}: {error}")
        self._status.value = f"<span style='color:{plots.COLORS['diverged']}'>{message}</span>"

    def _read_controls(self) -> None:
        """model and config from the current control values (raises ValueError on an invalid combination).

        A log slider that a drag left on one of its positions is set to the round number the config reads.
        """
        by_target: dict[str, dict] = {"model": {}, "train": {}}
        for name, control in self.controls.items():
            value = control.value
            for target in ("model", "train") if control.target == "both" else (control.target,):
                by_target[target][name] = value
            if isinstance(control.slider, w.FloatLogSlider) and value not in (None, control.off_value):
                if value != control.slider.value:
                    self._quiet = True
                    try:
                        control.slider.value = value
                    finally:
                        self._quiet = False
        self.model = self.model.replace(**by_target["model"])
        self.config = self.config.replace(**by_target["train"])

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        # The same widget view ipywidgets 7 and 8 send; a short, stable text/plain (nbval compares it); and a still
        # of the plot, which a page without a kernel (the course's website) shows in the widget's place.
        return {
            "text/plain": f"Panel(controls={', '.join(self.controls)})",
            "image/png": base64.b64encode(bytes(self._image.value)).decode("ascii"),
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 0,
                "model_id": self.widget.model_id,
            },
        }


def panel(
    data,
    *,
    model: ModelConfig,
    config: TrainConfig,
    controls: Sequence[str],
    plot: str | Callable[[History, Figure], object] = "dashboard",
    title: str = "",
    figsize: tuple[float, float] | None = None,
    seeds: Sequence[int] | None = None,
) -> Panel:
    """A panel of `controls` (names of config fields, see CONTROLS) that re-trains `model` with `config` on `data`.

    `plot` is "dashboard" (loss, gradient norms, update ratios) or a function (run, figure) that draws into the
    (cleared) figure of size `figsize` (inches). With `seeds` (e.g. `range(5)`), every change trains one run per
    seed (`train_seeds`) and the plot shows their mean and range. The first run happens here, so the panel shows
    a plot as soon as it is displayed.
    """
    return Panel(
        data, model=model, config=config, controls=controls, plot=plot, title=title, figsize=figsize, seeds=seeds
    )
