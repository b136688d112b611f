"""The field table (helpers.config): checks, an exact print/parse round trip, and the controls it makes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import widgets
from helpers.config import Field, fields
from helpers.models import ModelConfig
from helpers.train import TrainConfig


def values(field: Field):
    """Every value a field allows, as a hypothesis strategy read off the field's own description."""
    if field.kind == "choice":
        strategy = st.sampled_from(field.choices)
    elif field.kind == "bool":
        strategy = st.booleans()
    elif field.kind == "int":
        strategy = st.integers(min_value=int(field.low or 0), max_value=10**9)
    else:
        strategy = st.floats(
            min_value=field.low, max_value=1e30, exclude_min=field.above, allow_nan=False, allow_infinity=False
        )
    strategy = st.one_of(strategy, st.sampled_from(field.words)) if field.words else strategy
    return st.one_of(st.none(), strategy) if field.optional else strategy


def configs(cls):
    def build(kwargs):
        if "devices" in kwargs:  # the rules across fields: devices divides batch_size, and low precision on
            kwargs["batch_size"] *= kwargs["devices"]  # several devices synchronizes BatchNorm
            kwargs["sync_batchnorm"] |= kwargs["precision"] != "float32" or kwargs["loss_scale"] is not None
        return cls(**kwargs)

    return st.fixed_dictionaries({name: values(field) for name, field in fields(cls).items()}).map(build)


@settings(max_examples=300, deadline=None)
@given(configs(TrainConfig))
def test_train_config_round_trips_exactly(config):
    assert TrainConfig.parse(str(config)) == config


@settings(max_examples=300, deadline=None)
@given(configs(ModelConfig))
def test_model_config_round_trips_exactly(config):
    assert ModelConfig.parse(str(config)) == config


def test_a_float_keeps_every_digit_and_a_round_one_stays_short():
    config = TrainConfig(lr=0.123456789, weight_decay=1e-5)
    assert "lr=0.123456789" in str(config) and "weight_decay=1e-05" in str(config)
    assert "init_scale=1 " in str(ModelConfig()) and "lr=0.05" in str(TrainConfig())


@pytest.mark.parametrize("text, name", [("lr=abc", "lr"), ("steps=1.5", "steps"), ("skip_nonfinite=yes", "skip")])
def test_unparsable_values_raise_value_error_naming_the_field(text, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig.parse(text)


def test_every_field_with_a_control_has_one_in_the_panels():
    described = {n for cls in (ModelConfig, TrainConfig) for n, f in fields(cls).items() if f.control}
    assert described == set(widgets.CONTROLS)
    assert widgets.CONTROLS["seed"](ModelConfig(), TrainConfig()).target == "both"
