"""helpers.studies: the recorded results match the study's table and support its claims, and a fresh run on the
other floating-point path supports the same claims."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from helpers import studies
from helpers.models import ModelConfig
from helpers.train import TrainConfig


def test_the_recording_is_of_the_study_as_it_is_now():
    """Changing a run in the table without re-recording would leave the notebook reading other runs' numbers."""
    recorded = studies.recorded("deep_cnn")
    table = studies.deep_cnn_runs()
    assert list(recorded["runs"]) == list(table), "re-run: python -m helpers.studies deep_cnn"
    for label, (model_config, config) in table.items():
        run = recorded["runs"][label]
        assert (run["model"], run["train"]) == (str(model_config), str(config)), label
        assert len(run["accuracy"]) == len(run["clipped"]) == len(recorded["seeds"]) >= 5, label


def test_the_recorded_deep_cnn_supports_every_claim():
    studies.check_deep_cnn(studies.recorded("deep_cnn"))


def test_a_claim_that_the_numbers_do_not_support_fails():
    study = json.loads(json.dumps(studies.recorded("deep_cnn")))
    for lr in studies.LRS:  # the plain network's accuracies swapped with the identity start's
        a, b = (studies.grid_label(net, lr, 0) for net in ("plain", "identity start"))
        study["runs"][a]["accuracy"], study["runs"][b]["accuracy"] = (
            study["runs"][b]["accuracy"],
            study["runs"][a]["accuracy"],
        )
    with pytest.raises(AssertionError, match="identity start should"):
        studies.check_deep_cnn(study)


def test_a_run_seen_under_two_labels_is_trained_once():
    run = (ModelConfig(depth=2, width=8), TrainConfig(steps=4, batch_size=16))
    logged = []
    result = studies.run_study({"a": run, "b": run}, seeds=(0, 1), log=logged.append)
    assert len(logged) == 1 and result["runs"]["a"] is result["runs"]["b"]
    assert result["seeds"] == [0, 1] and len(result["runs"]["a"]["accuracy"]) == 2
    assert all(0 <= a <= 1 for a in result["runs"]["a"]["accuracy"])


def test_an_unknown_study_is_a_value_error():
    with pytest.raises(ValueError, match="study"):
        studies.recorded("deep_mlp")


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the second path names an x86 instruction set")
def test_the_deep_cnn_claims_hold_on_a_fresh_run_on_the_second_floating_point_path(tmp_path):
    """The claims rest on many training runs, whose last bits (and after 200 steps, accuracies) differ on another
    CPU: re-run every one of them on AVX without FMA (as `make test` runs the notebooks a second time)."""
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_max_isa=AVX"}
    out = tmp_path / "deep_cnn.json"
    command = [sys.executable, "-m", "helpers.studies", "deep_cnn", "--out", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1100)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    fresh = json.loads(out.read_text())
    studies.check_deep_cnn(fresh)
