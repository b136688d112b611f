"""What every exercise checker shares: an untouched exercise cell gets one plain sentence, not a verdict."""

import importlib
import inspect
import pkgutil

import pytest

import helpers.exercises
from helpers.exercises._check import NOT_ANSWERED

CHECKERS = [
    (module.name, name, fn)
    for module in pkgutil.iter_modules(helpers.exercises.__path__)
    if not module.name.startswith("_")
    for name, fn in inspect.getmembers(importlib.import_module(f"helpers.exercises.{module.name}"), inspect.isfunction)
    if name.startswith("check_") and fn.__module__ == f"helpers.exercises.{module.name}"
]


def test_every_notebook_has_checkers():
    assert {m for m, _, _ in CHECKERS} >= {
        "exploding", "initialization", "learning_rate", "clipping", "weight_decay", "batchnorm", "cnn",
    }  # fmt: skip


@pytest.mark.parametrize(("module", "name", "fn"), CHECKERS, ids=[f"{m}.{n}" for m, n, _ in CHECKERS])
def test_placeholder_is_reported_as_not_answered(module, name, fn, capsys):
    required = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    ok = fn(*[...] * len(required))
    out = capsys.readouterr().out
    assert ok is False
    assert out.strip() == NOT_ANSWERED, f"{module}.{name}(...) printed {out!r}"
