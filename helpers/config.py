"""One description per config field, as TensorFlow Playground's `state.ts` has: how the field is checked, printed,
parsed back and shown as a control. `ModelConfig` (helpers.models) and `TrainConfig` (helpers.train) are frozen
dataclasses built on it, so a config prints as a short string, `parse(str(config)) == config` exactly, and a
slider panel (helpers.widgets) makes each control from the same table.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Self

import numpy as np


@dataclasses.dataclass(frozen=True)
class Field:
    """How one config field is checked, printed, parsed and shown.

    kind: "float" | "int" | "bool" | "choice". low: the smallest value allowed (`above`: strictly larger).
    optional: None is allowed too (it means "off"). words: strings allowed besides the kind's values ("dynamic").
    printed: printed even when it has its default value.
    control: the slider a panel shows, or None for none: ("log", low exponent, high exponent[, value shown while
    switched off]) | ("int", low, high, step) | ("options", values) | ("checkbox",) | ("dropdown",).
    """

    kind: str
    choices: tuple = ()
    low: float | None = None
    above: bool = False
    optional: bool = False
    words: tuple = ()
    printed: bool = False
    control: tuple | None = None

    def check(self, name: str, value) -> None:
        """ValueError naming the field unless `value` is allowed."""
        if (value is None and self.optional) or (isinstance(value, str) and value in self.words):
            return
        if self.kind == "choice":
            ok, want = value in self.choices, f"one of {self.choices}"
        elif self.kind == "bool":
            ok, want = isinstance(value, bool), "True or False"
        elif self.kind == "int":
            ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
            ok = ok and (self.low is None or value >= self.low)
            want = "an integer" + (f" >= {self.low:g}" if self.low is not None else "")
        else:
            ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (self.low is None or (value > self.low if self.above else value >= self.low))
            want = "a finite number" + (f" {'>' if self.above else '>='} {self.low:g}" if self.low is not None else "")
        if not ok:
            alternatives = "".join(f" or {w!r}" for w in self.words) + (" or None" if self.optional else "")
            raise ValueError(f"{name} must be {want}{alternatives}, got {value!r}")

    def format(self, value) -> str:
        """The value as `parse` reads it back exactly: 0.05, 1e-05, 0.123456789, 3, True, adam, None."""
        if isinstance(value, float):
            short = f"{value:g}"
            return short if float(short) == value else repr(value)
        return str(value)

    def parse(self, name: str, raw: str):
        if raw == "None" and self.optional:
            return None
        if raw in self.words:
            return raw
        try:
            if self.kind == "bool":
                return {"True": True, "False": False}[raw]
            return {"float": float, "int": int, "choice": str}[self.kind](raw)
        except (KeyError, ValueError):
            raise ValueError(f"config string: {name}={raw} is not a valid {self.kind}") from None


def setting(default, kind: str, **spec) -> Any:
    """A dataclass field with its description (see `Field`)."""
    return dataclasses.field(default=default, metadata={"field": Field(kind, **spec)})


def fields(config) -> dict[str, Field]:
    """name -> Field of a config class or instance, in declaration order."""
    return {f.name: f.metadata["field"] for f in dataclasses.fields(config)}


class Config:
    """What `ModelConfig` and `TrainConfig` share: checks, `str`, `parse`, `replace`, all from their fields."""

    def __post_init__(self):
        for name, field in fields(self).items():
            field.check(name, getattr(self, name))

    def __str__(self) -> str:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return " ".join(
            f"{name}={field.format(getattr(self, name))}"
            for name, field in fields(self).items()
            if field.printed or getattr(self, name) != defaults[name]
        )

    @classmethod
    def parse(cls, text: str) -> Self:
        """Read back `str(config)`: space-separated key=value pairs; missing keys keep their defaults."""
        table = fields(cls)
        values = {}
        for item in text.split():
            key, sep, raw = item.partition("=")
            if not sep or key not in table:
                raise ValueError(f"config string: unknown item {item!r}; keys are {sorted(table)}")
            values[key] = table[key].parse(key, raw)
        return cls(**values)

    def replace(self, **changes) -> Self:
        return dataclasses.replace(self, **changes)
