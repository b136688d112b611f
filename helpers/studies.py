"""Studies too long for a notebook: many trainings on several seeds, recorded once and re-checked by the tests.

A study is a table of runs (a label -> a `ModelConfig` and a `TrainConfig`), trained with `train_seeds`. Its
results are stored in `helpers/recorded/<study>.json` with the machine and versions that produced them; a
notebook reads them with `recorded(study)` and asserts its claims on them with the study's `check_*` function.
`tests/test_studies.py` runs every study again, on the other floating-point path, and checks the same claims:
a claim holds on the recorded numbers and on fresh ones.

Re-run and record:  python -m helpers.studies deep_cnn   (about 6 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from helpers.data import load_digits
from helpers.models import ModelConfig
from helpers.train import SEEDS, TrainConfig, train_seeds

RECORDED = Path(__file__).parent / "recorded"

# ----------------------------------------------------------------------------------------------------------
# deep_cnn: where the plain 16-block CNN's explosion at initialisation costs it, and what each fix is worth
# ----------------------------------------------------------------------------------------------------------

#: Notebook 07's three deep networks: 16 blocks of conv 3x3 (16 channels), BatchNorm, ReLU.
DEEP = {
    "plain": ModelConfig(kind="cnn", depth=16, width=16, batchnorm=True),
    "residual": ModelConfig(kind="cnn", depth=16, width=16, batchnorm=True, residual=True),
    "identity start": ModelConfig(
        kind="cnn", depth=16, width=16, batchnorm=True, residual=True, zero_init_residual=True
    ),
}
#: The stabilized recipe for them: SGD with momentum, global-norm clipping, decoupled weight decay, warmup.
RECIPE = TrainConfig(optimizer="momentum", lr=0.1, clip_norm=1.0, weight_decay=5e-4, warmup_steps=50, steps=200)
LRS = (0.05, 0.1, 0.2, 0.4)
WARMUPS = (0, 50)

#: What each fix is worth: the identity-start network with the recipe, less one fix at a time.
ABLATION = {
    "full recipe": (DEEP["identity start"], RECIPE),
    "no warmup": (DEEP["identity start"], RECIPE.replace(warmup_steps=0)),
    "no clipping": (DEEP["identity start"], RECIPE.replace(clip_norm=None)),
    "no weight decay": (DEEP["identity start"], RECIPE.replace(weight_decay=0.0)),
    "no identity start": (DEEP["residual"], RECIPE),
    "no residual connections": (DEEP["plain"], RECIPE),
    "no BatchNorm": (DEEP["identity start"].replace(batchnorm=False), RECIPE),
}


DEPTHS = (4, 8, 16, 32)


def grid_label(network: str, lr: float, warmup: int, steps: int = RECIPE.steps, depth: int = 16) -> str:
    return f"{network}, {depth} blocks, lr {lr:g}, warmup {warmup}, {steps} steps"


def deep_cnn_runs() -> dict[str, tuple[ModelConfig, TrainConfig]]:
    """Every run of the study: the lr x warmup grid for the plain and identity-start networks, other depths and
    twice as many steps for both at the recipe, and the ablation. Labels that name the same run share it."""
    runs = {
        grid_label(net, lr, warmup): (DEEP[net], RECIPE.replace(lr=lr, warmup_steps=warmup))
        for warmup in WARMUPS
        for lr in LRS
        for net in ("plain", "identity start")
    }
    for net in ("plain", "identity start"):
        for depth in DEPTHS:
            runs[grid_label(net, RECIPE.lr, RECIPE.warmup_steps, depth=depth)] = (
                DEEP[net].replace(depth=depth),
                RECIPE,
            )
        runs[grid_label(net, RECIPE.lr, RECIPE.warmup_steps, 2 * RECIPE.steps)] = (DEEP[net], RECIPE.replace(steps=400))
    for label, run in ABLATION.items():
        runs[f"ablation: {label}"] = run
    return runs


def run_study(runs: dict[str, tuple[ModelConfig, TrainConfig]], seeds=SEEDS, log=print) -> dict:
    """Train every run on `seeds` (a run seen under another label is reused); test accuracy and clipped share."""
    data = load_digits(seed=0)
    done: dict[tuple[str, str], dict] = {}
    results = {}
    for label, (model_config, config) in runs.items():
        key = (str(model_config), str(config))
        if key not in done:
            start = time.perf_counter()
            seed_runs = train_seeds(model_config, data, config, seeds)
            done[key] = {
                "model": str(model_config),
                "train": str(config),
                "accuracy": [round(float(a), 4) for a in seed_runs.evaluate(data.x_test, data.y_test)],
                "clipped": [round(float(np.mean(h.clipped)), 4) for h in seed_runs.histories],
                # the median global gradient norm before clipping: with clip_norm 1, the factor clipping divides by
                "grad_norm": [round(float(np.median(h.grad_norm)), 4) for h in seed_runs.histories],
                "diverged_at": [h.diverged_at for h in seed_runs.histories],
            }
            log(f"{label:55} {np.round(done[key]['accuracy'], 3)}  {time.perf_counter() - start:.1f} s")
        results[label] = done[key]
    return {"seeds": list(seeds), "runs": results}


def separated_runs(study: dict, low: str, high: str) -> bool:
    """Every seed of run `high` beats every seed of run `low` (5 seeds against 5: chance does it once in 252)."""
    return max(study["runs"][low]["accuracy"]) < min(study["runs"][high]["accuracy"])


def check_deep_cnn(study: dict) -> None:
    """The claims notebook 07 makes about the deep CNNs, asserted on a study's results (recorded or fresh).

    Margins: a row's seeds spread over up to 40 points, so a gap between two rows is only claimed where it is
    wider than that spread, and "no difference" means a gap smaller than the spread.
    """
    acc = {label: np.array(r["accuracy"]) for label, r in study["runs"].items()}
    clipped = {label: np.mean(r["clipped"]) for label, r in study["runs"].items()}

    def gap(lr=RECIPE.lr, warmup=RECIPE.warmup_steps, steps=RECIPE.steps, depth=16):
        """Mean accuracy of the identity start minus the plain network's, and the wider of their spreads."""
        ident, plain = (acc[grid_label(net, lr, warmup, steps, depth)] for net in ("identity start", "plain"))
        return ident.mean() - plain.mean(), max(np.ptp(ident), np.ptp(plain))

    # 16 blocks: the identity start leads across learning rates and warmup (by more than noise on average), and
    # at lr 0.2 without warmup (the notebook's own run) every one of its seeds beats every plain one
    gaps = np.array([gap(lr, warmup)[0] for lr in LRS for warmup in WARMUPS])
    assert (gaps > 0).sum() >= 6 and gaps.mean() > 0.03, (
        f"16 blocks: the identity start should lead in at least 6 of the 8 settings and by over 3 points on "
        f"average; leads by {np.round(100 * gaps, 1)} points"
    )
    warmed = [gap(lr, 50)[0] for lr in LRS]
    assert sum(g > 0 for g in warmed) >= 3, f"with warmup 50 the identity start should still lead, by {warmed}"
    assert separated_runs(study, grid_label("plain", 0.2, 0), grid_label("identity start", 0.2, 0)), (
        "16 blocks, lr 0.2, no warmup: every identity-start seed should beat every plain one"
    )
    for lr in LRS:
        for warmup in WARMUPS:
            plain, ident = (clipped[grid_label(net, lr, warmup)] for net in ("plain", "identity start"))
            assert plain > ident + 0.1, (
                f"lr {lr}, warmup {warmup}: clipping should act on more of the plain network's steps than of the "
                f"identity start's, got {plain:.0%} and {ident:.0%}"
            )
    # depth: no difference at 4 and 8 blocks, a collapse of the plain network at 32
    for depth in (4, 8):
        d, spread = gap(depth=depth)
        assert abs(d) < spread, f"{depth} blocks: the gap ({d:.1%}) should be within the seeds' spread ({spread:.1%})"
    plain32, ident32 = (
        grid_label(net, RECIPE.lr, RECIPE.warmup_steps, depth=32) for net in ("plain", "identity start")
    )
    assert separated_runs(study, plain32, ident32) and gap(depth=32)[0] > 0.2, (
        f"32 blocks: every identity-start seed should beat every plain one, by over 20 points on average; "
        f"got {acc[ident32].round(3)} against {acc[plain32].round(3)}"
    )
    # twice the steps do not close the gap
    plain400 = acc[grid_label("plain", RECIPE.lr, RECIPE.warmup_steps, 2 * RECIPE.steps)]
    ident400 = acc[grid_label("identity start", RECIPE.lr, RECIPE.warmup_steps, 2 * RECIPE.steps)]
    assert plain400.mean() < ident400.min(), (
        f"16 blocks, 400 steps: the plain network's mean should stay below the identity start's lowest seed; got "
        f"{plain400.mean():.1%} against {ident400.round(3)}"
    )
    # the ablation: the identity start is the fix that matters; each other one is within the seeds' spread
    ablation = {label: acc[f"ablation: {label}"] for label in ABLATION}
    full, worst = ablation["full recipe"], ablation["no identity start"]
    others = [v.mean() for k, v in ablation.items() if k != "no identity start"]
    assert separated_runs(study, "ablation: no identity start", "ablation: full recipe"), (
        "every seed of the full recipe should beat every seed without the identity start"
    )
    assert worst.mean() < 0.85 and worst.mean() < min(others) - 0.1, (
        f"residual blocks without the identity start should train worst, below 85% and 10 points under every "
        f"other row: {worst.mean():.1%} against {np.round(others, 3)}"
    )
    for label in ("no warmup", "no clipping", "no weight decay", "no BatchNorm"):
        d, spread = ablation[label].mean() - full.mean(), max(np.ptp(ablation[label]), np.ptp(full))
        assert abs(d) < spread, f"{label}: {d:+.1%} from the full recipe, more than the seeds' spread {spread:.1%}"


# ----------------------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------------------

STUDIES = {"deep_cnn": (deep_cnn_runs, check_deep_cnn)}


def recorded(study: str) -> dict:
    """The recorded results of `study` (see `python -m helpers.studies`)."""
    if study not in STUDIES:
        raise ValueError(f"study must be one of {sorted(STUDIES)}, got {study!r}")
    return json.loads((RECORDED / f"{study}.json").read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run a study and record its results (or write them to --out).")
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--out", type=Path, help="where to write the results (default: helpers/recorded/)")
    args = parser.parse_args(argv)
    runs, check = STUDIES[args.study]
    start = time.perf_counter()
    results = run_study(runs())
    results["recorded"] = {
        "date": datetime.date.today().isoformat(),
        "seconds": round(time.perf_counter() - start),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        "jax": jax.__version__,
        "command": f"python -m helpers.studies {args.study}",
    }
    out = args.out or RECORDED / f"{args.study}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out} in {results['recorded']['seconds']} s")
    check(results)
    print("every claim holds")


if __name__ == "__main__":
    main()
