"""Slider panels: every control edits one field of a `ModelConfig` or `TrainConfig`, and each change re-runs training.

    p = panel(data, model=ModelConfig(depth=8), config=TrainConfig(steps=100), controls=["lr", "clip_norm"])
    p                       # the controls, the config strings of the run, and its dashboard

`p.model` / `p.config` are the current values, `p.history` the last run, `p.set(lr=0.3)` moves a control as a
user would and re-runs. Continuous knobs (lr, clip_norm, l2, weight_decay, warmup_steps, init_scale, steps,
seed) re-use the compiled training step: they are data, not program (see helpers.train). depth, width,
activation, batchnorm, residual, optimizer and clip_mode change the program and compile once per new value.

Only API common to ipywidgets 7 (which Colab has shipped) and 8 is used. The plot is an `ipywidgets.Image` of
PNG bytes: it redraws in JupyterLab, Colab and classic Notebook alike, and needs no Output widget (whose
captured prints break nbval) and no ipympl.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence

import ipywidgets as w
import jax
from matplotlib.figure import Figure

from helpers import plots
from helpers.models import ACTIVATIONS, INITS, ModelConfig
from helpers.train import CLIP_MODES, OPTIMIZERS, History, TrainConfig, train

__all__ = ["CONTROLS", "Panel", "compile_count", "panel"]

# ----------------------------------------------------------------------------------------------------------
# Counting XLA compilations (the promise "a slider does not recompile" is checked, not assumed)
# ----------------------------------------------------------------------------------------------------------

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch.BACKEND_COMPILE_EVENT
_compiles = 0


def _on_jax_event(event: str, duration_secs: float, **kwargs) -> None:
    global _compiles
    if event == _COMPILE_EVENT:
        _compiles += 1


jax.monitoring.register_event_duration_secs_listener(_on_jax_event)


def compile_count() -> int:
    """How many XLA compilations this process has run since helpers.widgets was imported."""
    return _compiles


# ----------------------------------------------------------------------------------------------------------
# Controls: one widget per config field
# ----------------------------------------------------------------------------------------------------------

_STYLE = {"description_width": "100px"}
_WIDTH = "380px"


def _nice(value: float) -> float:
    """A log slider's value to 2 significant digits, so configs read lr=0.05 instead of lr=0.0501187.

    The slider's steps of 10**0.1 then read 1, 1.3, 1.6, 2, 2.5, 3.2, 4, 5, 6.3, 7.9 (the R10 series).
    """
    return float(f"{value:.2g}")


def _log_slider(name: str, value: float, low: int, high: int) -> w.FloatLogSlider:
    """A base-10 log slider from 10**low to 10**high (widened to hold `value`) in steps of 10**0.1."""
    exponent = math.log10(value)
    return w.FloatLogSlider(
        value=value,
        base=10,
        min=min(low, math.floor(exponent)),
        max=max(high, math.ceil(exponent)),
        step=0.1,
        description=name,
        readout_format=".2g",
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


def _optional_log(name: str, value, off_value, default: float, low: int, high: int) -> _Control:
    """A log slider with an "on" checkbox; while off, the slider rests at `default`."""
    on = value is not None and value != off_value
    slider = _log_slider(name, value if on else default, low, high)
    return _Control(name, "train", slider, _nice, switch_on=on, off_value=off_value)


def _choices(value: int, options: Sequence[int]) -> list[int]:
    return sorted({*options, value})


#: Every control a panel can show: name -> factory(model, config) -> _Control. Names are config fields.
CONTROLS: dict[str, Callable[[ModelConfig, TrainConfig], _Control]] = {
    # the model (helpers.models.ModelConfig)
    "depth": lambda m, c: _Control("depth", "model", _int_slider("depth", m.depth, 1, 32), int),
    "width": lambda m, c: _Control(
        "width",
        "model",
        w.SelectionSlider(
            value=m.width,
            options=_choices(m.width, (8, 16, 32, 64, 128, 256)),
            description="width",
            continuous_update=False,
            style=_STYLE,
            layout=w.Layout(width=_WIDTH),
        ),
        int,
    ),
    "init_scale": lambda m, c: _Control(
        "init_scale",
        "model",
        w.FloatSlider(
            value=m.init_scale,
            min=min(0.1, m.init_scale),
            max=max(3.0, m.init_scale),
            step=0.05,
            description="init_scale",
            readout_format=".2f",
            continuous_update=False,
            style=_STYLE,
            layout=w.Layout(width=_WIDTH),
        ),
        lambda v: round(float(v), 3),
    ),
    "init": lambda m, c: _Control("init", "model", _dropdown("init", m.init, INITS)),
    "activation": lambda m, c: _Control("activation", "model", _dropdown("activation", m.activation, ACTIVATIONS)),
    "batchnorm": lambda m, c: _Control(
        "batchnorm", "model", w.Checkbox(value=m.batchnorm, description="batchnorm", indent=False), bool
    ),
    "residual": lambda m, c: _Control(
        "residual", "model", w.Checkbox(value=m.residual, description="residual", indent=False), bool
    ),
    # training (helpers.train.TrainConfig)
    "optimizer": lambda m, c: _Control("optimizer", "train", _dropdown("optimizer", c.optimizer, OPTIMIZERS)),
    "lr": lambda m, c: _Control("lr", "train", _log_slider("lr", c.lr, -4, 1), _nice),
    "warmup_steps": lambda m, c: _Control(
        "warmup_steps", "train", _int_slider("warmup_steps", c.warmup_steps, 0, 500, 10), int
    ),
    "clip_mode": lambda m, c: _Control("clip_mode", "train", _dropdown("clip_mode", c.clip_mode, CLIP_MODES)),
    "clip_norm": lambda m, c: _optional_log("clip_norm", c.clip_norm, None, 1.0, -2, 2),
    "l2": lambda m, c: _optional_log("l2", c.l2, 0.0, 1e-3, -6, 0),
    "weight_decay": lambda m, c: _optional_log("weight_decay", c.weight_decay, 0.0, 1e-3, -5, 0),
    "steps": lambda m, c: _Control("steps", "train", _int_slider("steps", c.steps, 10, 2000, 10), int),
    # one seed for both the initial weights (ModelConfig.seed) and the batch order (TrainConfig.seed)
    "seed": lambda m, c: _Control("seed", "both", _int_slider("seed", m.seed, 0, 20), int),
}


# ----------------------------------------------------------------------------------------------------------
# The panel
# ----------------------------------------------------------------------------------------------------------


class Panel:
    """Controls + the config strings of the current run + its plot; each change re-runs `train` once.

    Attributes: `widget` (the ipywidgets box; the Panel also displays itself), `model`, `config` (current
    values), `history` (last run), `net` (the trained network of the last run), `figure` (the one Figure,
    redrawn each run), `compiles` (XLA compilations during the last run), `seconds` (its timings).
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
    ):
        unknown = [name for name in controls if name not in CONTROLS]
        if unknown:
            raise ValueError(f"controls: unknown {unknown}; choose from {list(CONTROLS)}")
        if plot != "dashboard" and not callable(plot):
            raise ValueError(f"plot must be 'dashboard' or a callable (history, figure), got {plot!r}")
        self.data = data
        self.model = model
        self.config = config
        self.title = title
        self.history: History | None = None
        self.net = None
        self.compiles = 0
        self.seconds: dict[str, float] = {}
        self._plot = plot
        self.figure = Figure(figsize=figsize or plots.DASHBOARD_SIZE, dpi=plots.DPI)
        self.controls = {name: CONTROLS[name](model, config) for name in dict.fromkeys(controls)}
        self._quiet = False
        for control in self.controls.values():
            control.observe(self._on_change)
        self._readout = w.HTML()
        self._status = w.HTML()
        self._image = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        head = [w.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        boxes = w.HBox([c.widget for c in self.controls.values()], layout=w.Layout(flex_flow="row wrap"))
        self.widget = w.VBox([*head, boxes, self._readout, self._status, self._image])
        self.run()

    def run(self) -> History:
        """Build the network from `model`, train it with `config`, redraw; returns the History."""
        start, compiles = time.perf_counter(), compile_count()
        self.net = self.model.build(self.data.image_shape, self.data.num_classes)
        self.history = train(self.net, self.data, self.config)
        trained = time.perf_counter()
        if self._plot == "dashboard":
            plots.draw_dashboard(self.history, self.figure, self.title)
        else:
            self.figure.clear()
            self._plot(self.history, self.figure)
        self._image.value = plots.figure_png(self.figure)
        self.compiles = compile_count() - compiles
        self.seconds = {"train": trained - start, "draw": time.perf_counter() - trained}
        self._readout.value = (
            f"<b>ModelConfig</b> <code>{html.escape(str(self.model))}</code><br>"
            f"<b>TrainConfig</b> <code>{html.escape(str(self.config))}</code>"
        )
        compiled = "compiled the training step" if self.compiles else "no recompilation"
        self._status.value = (
            f"{html.escape(self.history.summary())} <span style='color:gray'>({compiled}; "
            f"{self.seconds['train']:.2f} s training, {self.seconds['draw']:.2f} s drawing)</span>"
        )
        return self.history

    def set(self, **values) -> History:
        """Move controls as a user would (e.g. `set(lr=0.3, clip_norm=None)`), then re-run once."""
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

    def _read_controls(self) -> None:
        """model and config from the current control values (raises ValueError on an invalid combination)."""
        by_target: dict[str, dict] = {"model": {}, "train": {}}
        for name, control in self.controls.items():
            for target in ("model", "train") if control.target == "both" else (control.target,):
                by_target[target][name] = control.value
        self.model = self.model.replace(**by_target["model"])
        self.config = self.config.replace(**by_target["train"])

    def _on_change(self, change) -> None:
        """A user moved a control: re-run; errors are shown in the panel (a widget callback has nowhere to raise)."""
        if self._quiet:
            return
        try:
            self._read_controls()
            self.run()
        except Exception as error:  # shown in the panel, not lost in the kernel log
            message = html.escape(f"{type(error).__name__}: {error}")
            self._status.value = f"<span style='color:{plots.COLORS['diverged']}'>{message}</span>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        # The same widget view ipywidgets 7 and 8 send; a short, stable text/plain (nbval compares it).
        return {
            "text/plain": f"Panel(controls={', '.join(self.controls)})",
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
) -> Panel:
    """A panel of `controls` (names of config fields, see CONTROLS) that re-trains `model` with `config` on `data`.

    `plot` is "dashboard" (loss, gradient norms, update ratios) or a function (history, figure) that draws
    into the (cleared) figure of size `figsize` (inches). The first run happens here, so the panel shows a plot
    as soon as it is displayed.
    """
    return Panel(data, model=model, config=config, controls=controls, plot=plot, title=title, figsize=figsize)
