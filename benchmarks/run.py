"""Speed of `helpers.train` against its targets, side by side in one run (`make bench`, ~1 min on 2 quiet cores).

Every comparison alternates its variants round by round (A B C, A B C, ...) and reports the median over rounds,
so that a slow spell on a shared machine hits every variant alike; ratios are ratios of medians. Wall-clock
time is what the targets are about; process CPU time is printed beside it where it matters, because it is far
less sensitive to other tenants of the machine (it still counts XLA's worker threads).

    .venv/bin/python benchmarks/run.py              # everything, writes benchmarks/results.json
    .venv/bin/python benchmarks/run.py --quick      # fewer rounds, smaller step counts (a smoke run)
    .venv/bin/python benchmarks/run.py --only small large  # some sections
    (results.json is only written by a full run; pass --out FILE to keep the others)

What each number means, and the numbers measured: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: `helpers` without an installed package
sys.path.insert(0, str(HERE))  # benchmarks/_variants.py

import _variants as V  # noqa: E402
import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from helpers import train as T  # noqa: E402
from helpers.models import CNN, MLP, ModelConfig  # noqa: E402

TARGETS = {
    "small_speedup_vs_nnx_jit": (">=", 4.0),
    "seeds5_cost_vs_one": ("<=", 3.0),
    "cnn_speedup_vs_torch_eager": (">=", 1.5),
    "large_speedup_vs_torch_eager": (">=", 1.6),
    "diagnostics_overhead": ("<=", 0.10),
    "compile_s_depth100": ("<", 3.0),
    "deep_cnn_s_to_97": ("<", 30.0),
    "diagnose_s_max_first_call": ("<", 2.0),
}


def load_data():
    try:
        from helpers.data import load_digits

        return load_digits()
    except ImportError:  # before helpers.data existed: the same arrays straight from scikit-learn
        from types import SimpleNamespace

        from sklearn.datasets import load_digits as sk

        d = sk()
        return SimpleNamespace(x_train=(d.images / 16.0).astype(np.float32)[..., None], y_train=d.target)


# ------------------------------------------------------------------------------------------------ timing


def alternate(variants: dict, rounds: int, probe=None) -> dict[str, dict[str, list[float]]]:
    """Run each variant once per round, in a rotating order; every call returns the number of steps it ran.

    Returns {name: {"wall": [s/step per round], "cpu": [...]}}. `probe` = (name, call): run after every
    variant's sample as well (its samples under `name`, and under that variant's "probe" key, paired).
    """
    names = list(variants)
    out = {n: {"wall": [], "cpu": [], "probe": []} for n in names}
    if probe:
        out[probe[0]] = {"wall": [], "cpu": []}

    def sample(name, call):
        w, c = time.perf_counter(), time.process_time()
        steps = call()
        out[name]["wall"].append((time.perf_counter() - w) / steps)
        out[name]["cpu"].append((time.process_time() - c) / steps)

    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            sample(n, variants[n])
            if probe:
                sample(*probe)
                out[n]["probe"].append(out[probe[0]]["wall"][-1])
    return out


def med(samples: dict, key: str = "wall") -> float:
    return statistics.median(samples[key])


def paired(a: dict, b: dict, key: str = "wall") -> float:
    """Median over rounds of a/b measured in the same round (cancels slow drifts of the machine's load)."""
    return statistics.median(x / y for x, y in zip(a[key], b[key], strict=True))


def mlp_flops(batch: int, in_features: int, depth: int, width: int, classes: int) -> float:
    """Matmul FLOPs of one training step: 2*B*fan_in*fan_out forward, twice that backward."""
    fans = [in_features * width] + [width * width] * (depth - 1) + [width * classes]
    return 6.0 * batch * sum(fans)


def cnn_flops(batch: int, in_shape, depth: int, width: int, classes: int) -> float:
    """Same count for the 3x3 'SAME' conv blocks (on the 8x8 grid) plus the linear head."""
    h, w, c = in_shape
    macs = [h * w * 9 * (c if i == 0 else width) * width for i in range(depth)] + [width * classes]
    return 6.0 * batch * sum(macs)


def build_mlp(depth, width, batchnorm=True):
    return MLP(64, depth, width, 10, batchnorm=batchnorm, rngs=nnx.Rngs(0))


def build_cnn():
    return CNN((8, 8, 1), depth=3, width=32, num_classes=10, batchnorm=True, rngs=nnx.Rngs(0))


def train_timer(model, data, config):
    """A variant: one full `train(...)` call; per-step time = its wall time / config.steps."""

    def call():
        T.train(model, data, config)
        return config.steps

    return call


def stepper_timer(stepper: V.Stepper, calls: int):
    def call():
        stepper(calls)
        return calls * stepper.steps_per_call

    return call


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------------ sections


def small(data, rounds: int, steps: int, res: dict) -> dict:
    """1 and 3: our step vs the Flax-tutorial step, and our step vs the same step without diagnostics."""
    log("\n[1/3] small: MLP depth 8 x width 64 + BatchNorm, batch 64, clip_by_global_norm + weight decay + SGD")
    cfg = T.TrainConfig(
        optimizer="sgd", lr=0.05, clip_norm=1.0, weight_decay=1e-4, batch_size=64, steps=steps, chunk_steps=50
    )
    model = build_mlp(8, 64)
    T.train(model, data, cfg.replace(steps=cfg.chunk_steps))  # compile
    ours_chunk = V.Stepper(build_mlp(8, 64), data, cfg, "ours")
    previous_chunk = V.Stepper(build_mlp(8, 64), data, cfg, "previous")
    nodiag_chunk = V.Stepper(build_mlp(8, 64), data, cfg, "ours without diagnostics")
    bare_chunk = V.Stepper(build_mlp(8, 64), data, cfg, "bare")
    tut_model = build_mlp(8, 64)
    tut_step, _ = V.tutorial_step(tut_model, cfg)
    idx = T._batch_indices(len(data.x_train), cfg.batch_size, steps, cfg.seed)
    x_dev, y_dev = jnp.asarray(data.x_train, jnp.float32), jnp.asarray(data.y_train, jnp.int32)
    batches = [(x_dev[i], y_dev[i]) for i in idx]  # pre-sliced on the device: the data loader costs nothing

    def tutorial():
        loss = None
        for xb, yb in batches:
            loss = tut_step(xb, yb)
        loss.block_until_ready()
        return len(batches)

    for s in (ours_chunk, previous_chunk, nodiag_chunk, bare_chunk):
        s(1)
    tutorial()
    calls = max(1, steps // cfg.chunk_steps)
    t = alternate(
        {
            "ours: train()": train_timer(model, data, cfg),
            "ours: compiled chunks": stepper_timer(ours_chunk, calls),
            "previous step (before the split): compiled chunks": stepper_timer(previous_chunk, calls),
            "ours without diagnostics: compiled chunks": stepper_timer(nodiag_chunk, calls),
            "bare (no diagnostics, no guard): compiled chunks": stepper_timer(bare_chunk, calls),
            "tutorial: @nnx.jit per step": tutorial,
        },
        rounds,
    )
    res["small_us_per_step"] = {k: med(v) * 1e6 for k, v in t.items()}
    res["small_cpu_us_per_step"] = {k: med(v, "cpu") * 1e6 for k, v in t.items()}
    res["small_speedup_vs_nnx_jit"] = med(t["tutorial: @nnx.jit per step"]) / med(t["ours: train()"])
    res["small_speedup_vs_nnx_jit_paired"] = paired(t["tutorial: @nnx.jit per step"], t["ours: train()"])
    res["small_speedup_compiled_chunks_vs_nnx_jit"] = med(t["tutorial: @nnx.jit per step"]) / med(
        t["ours: compiled chunks"]
    )
    ours, nodiag, bare = (
        t[k]
        for k in (
            "ours: compiled chunks",
            "ours without diagnostics: compiled chunks",
            "bare (no diagnostics, no guard): compiled chunks",
        )
    )
    res["small_step_vs_previous"] = paired(ours, t["previous step (before the split): compiled chunks"])
    res["diagnostics_overhead"] = med(ours) / med(nodiag) - 1
    res["diagnostics_overhead_paired"] = paired(ours, nodiag) - 1
    res["diagnostics_overhead_cpu"] = med(ours, "cpu") / med(nodiag, "cpu") - 1
    res["diagnostics_and_guard_overhead"] = med(ours) / med(bare) - 1
    res["diagnostics_and_guard_overhead_cpu"] = med(ours, "cpu") / med(bare, "cpu") - 1
    return t


def large(data, rounds: int, steps: int, res: dict) -> dict:
    """2: achieved matmul GFLOP/s of the large MLP vs a 2048^3 float32 matmul, same run."""
    log("\n[2] large: MLP depth 20 x width 128 + BatchNorm, batch 128, same optimizer; 2048^3 f32 matmul")
    cfg = T.TrainConfig(
        optimizer="sgd", lr=0.05, clip_norm=1.0, weight_decay=1e-4, batch_size=128, steps=steps, chunk_steps=50
    )
    model = build_mlp(20, 128)
    T.train(model, data, cfg.replace(steps=cfg.chunk_steps))
    ours_chunk = V.Stepper(build_mlp(20, 128), data, cfg, "ours")
    previous_chunk = V.Stepper(build_mlp(20, 128), data, cfg, "previous")
    nodiag_chunk = V.Stepper(build_mlp(20, 128), data, cfg, "ours without diagnostics")
    nobn_chunk = V.Stepper(build_mlp(20, 128, batchnorm=False), data, cfg, "bare")
    for s in (ours_chunk, previous_chunk, nodiag_chunk, nobn_chunk):
        s(1)
    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.dot)
    matmul(a, b).block_until_ready()

    def mm():
        matmul(a, b).block_until_ready()
        return 1

    # The step's own matmul shape, batch x width x width = 128^3, chained 1000 times inside one compiled loop
    # (a data dependence from each product to the next keeps XLA from hoisting it): what XLA:CPU reaches on
    # the matrices this model is made of. XLA:CPU runs such small products on one core, the 2048^3 on all.
    small_a, small_b = a[:128, :128], b[:128, :128] * 0.05
    small_chain = jax.jit(lambda a, b: jax.lax.scan(lambda c, _: (jnp.tanh(c @ b), None), a, None, length=1000)[0])
    small_chain(small_a, small_b).block_until_ready()

    def mm_small():
        small_chain(small_a, small_b).block_until_ready()
        return 1000

    calls = max(1, steps // cfg.chunk_steps)
    t = alternate(
        {
            "ours: train()": train_timer(model, data, cfg),
            "ours: compiled chunks": stepper_timer(ours_chunk, calls),
            "previous step (before the split): compiled chunks": stepper_timer(previous_chunk, calls),
            "ours without diagnostics: compiled chunks": stepper_timer(nodiag_chunk, calls),
            "bare: no BatchNorm, diagnostics, guard": stepper_timer(nobn_chunk, calls),
            "matmul 128^3 chained in a loop (per product)": mm_small,
        },
        rounds,
        probe=("matmul 2048^3", mm),
    )
    flops = mlp_flops(128, 64, 20, 128, 10)
    mm_flops = 2 * n**3
    # The peak. The matmul keeps every core busy, so its GFLOP per CPU-second times the core count is what it
    # reaches in wall-clock time on an idle machine (189 GFLOP/s here, 188 in shared/facts.md), and unlike its
    # wall-clock rate this does not collapse when another process takes a core: a 2-thread matmul loses far
    # more to a busy neighbour than the partly serial training step does, so wall/wall ratios read HIGH under
    # load (kept below as *_wall_ratio). Step times are median wall clock, which under load errs LOW: the
    # headline fraction is conservative.
    peak = mm_flops / med(t["matmul 2048^3"], "cpu") / 1e9 * (os.cpu_count() or 1)
    res["matmul_gflops"] = peak
    res["matmul_gflops_wall_median"] = mm_flops / med(t["matmul 2048^3"]) / 1e9
    res["matmul_gflops_wall_best"] = mm_flops / min(t["matmul 2048^3"]["wall"]) / 1e9
    res["large_flops_per_step"] = flops
    res["matmul_128_gflops"] = 2 * 128**3 / med(t.pop("matmul 128^3 chained in a loop (per product)")) / 1e9
    res["matmul_128_fraction_of_peak"] = res["matmul_128_gflops"] / peak
    steps_only = {k: v for k, v in t.items() if k != "matmul 2048^3"}
    res["large_us_per_step"] = {k: med(v) * 1e6 for k, v in steps_only.items()}
    res["large_gflops"] = {k: flops / med(v) / 1e9 for k, v in steps_only.items()}
    res["large_fraction_of_matmul_peak"] = res["large_gflops"]["ours: train()"] / peak
    res["large_fraction_of_matmul_peak_best"] = flops / min(t["ours: train()"]["wall"]) / 1e9 / peak
    res["large_fraction_compiled_chunks"] = res["large_gflops"]["ours: compiled chunks"] / peak
    res["large_fraction_no_diagnostics"] = res["large_gflops"]["ours without diagnostics: compiled chunks"] / peak
    res["large_fraction_bare_no_batchnorm"] = res["large_gflops"]["bare: no BatchNorm, diagnostics, guard"] / peak
    res["large_fraction_of_matmul_128"] = res["large_gflops"]["ours: train()"] / res["matmul_128_gflops"]
    res["large_fraction_wall_ratio"] = res["large_gflops"]["ours: train()"] / res["matmul_gflops_wall_median"]
    res["large_fraction_wall_ratio_paired"] = statistics.median(  # each sample vs the matmul right after it
        flops / s / (mm_flops / m) for s, m in zip(t["ours: train()"]["wall"], t["ours: train()"]["probe"], strict=True)
    )
    res["large_step_vs_previous"] = paired(
        t["ours: compiled chunks"], t["previous step (before the split): compiled chunks"]
    )
    res["large_diagnostics_overhead"] = (
        med(t["ours: compiled chunks"]) / med(t["ours without diagnostics: compiled chunks"]) - 1
    )
    return t


def chunking(data, rounds: int, res: dict) -> dict:
    """2 (cont.): the notebook CNN, and why CNNs step per call while MLPs step inside lax.scan."""
    log("\n[2b] chunking: CNN(8x8x1, depth 3, width 32, BatchNorm), batch 64, Adam; MLP chunk_steps 1 vs 50")
    cnn_cfg = T.TrainConfig(optimizer="adam", lr=1e-3, batch_size=64, steps=50, chunk_steps=50)
    cnn = build_cnn()
    assert not T._spec(cnn, cnn_cfg).scan, "the CNN is expected to step per call (helpers.train._spec)"
    T.train(cnn, data, cnn_cfg.replace(steps=cnn_cfg.chunk_steps))
    per_step = V.Stepper(build_cnn(), data, cnn_cfg, "ours", scan=False)
    in_scan = V.Stepper(build_cnn(), data, cnn_cfg.replace(chunk_steps=5), "ours", scan=True)  # 5 steps a chunk
    w = time.perf_counter()
    in_scan(1)
    res["cnn_in_scan_first_call_s"] = time.perf_counter() - w
    per_step(1)
    mlp_cfg = T.TrainConfig(
        optimizer="sgd", lr=0.05, clip_norm=1.0, weight_decay=1e-4, batch_size=64, steps=100, chunk_steps=50
    )
    mlp50, mlp1 = build_mlp(8, 64), build_mlp(8, 64)
    T.train(mlp50, data, mlp_cfg.replace(steps=50))
    T.train(mlp1, data, mlp_cfg.replace(steps=1, chunk_steps=1))
    t = alternate(
        {
            "CNN: train() (per-step calls)": train_timer(cnn, data, cnn_cfg),
            "CNN: per-step compiled calls": stepper_timer(per_step, 50),
            "CNN: 5 steps in one lax.scan": stepper_timer(in_scan, 1),
            "MLP small: train(chunk_steps=50)": train_timer(mlp50, data, mlp_cfg),
            "MLP small: train(chunk_steps=1)": train_timer(mlp1, data, mlp_cfg.replace(chunk_steps=1)),
        },
        rounds,
    )
    flops = cnn_flops(64, (8, 8, 1), 3, 32, 10)
    res["cnn_flops_per_step"] = flops
    res["chunking_us_per_step"] = {k: med(v) * 1e6 for k, v in t.items()}
    res["cnn_us_per_step"] = med(t["CNN: train() (per-step calls)"]) * 1e6
    res["cnn_gflops"] = flops / med(t["CNN: train() (per-step calls)"]) / 1e9
    if "matmul_gflops" in res:
        res["cnn_fraction_of_matmul_peak"] = res["cnn_gflops"] / res["matmul_gflops"]
    res["cnn_scan_slowdown"] = med(t["CNN: 5 steps in one lax.scan"]) / med(t["CNN: per-step compiled calls"])
    res["mlp_chunk1_slowdown"] = med(t["MLP small: train(chunk_steps=1)"]) / med(t["MLP small: train(chunk_steps=50)"])
    return t


def compile_depth100(data, res: dict) -> None:
    """4: first `train` call minus a second identical one (trace + lower + compile), depth 100 x width 64."""
    log("\n[4] compile: MLP depth 100 x width 64 (no BatchNorm), train(steps=chunk_steps=50), first - second call")
    cfg = T.TrainConfig(optimizer="sgd", lr=0.01, clip_norm=1.0, weight_decay=1e-4, steps=50, chunk_steps=50)
    model = build_mlp(100, 64, batchnorm=False)
    # Where the time goes (JAX's own compile events, wall seconds): tracing to a jaxpr, lowering it to
    # StableHLO, XLA's compilation. Every jit compiled during the first call counts, small helpers included.
    phases: dict[str, float] = {}

    def listen(name, seconds, **_):
        if name.startswith("/jax/core/compile/"):
            key = name.removeprefix("/jax/core/compile/").removesuffix("_duration")
            phases[key] = phases.get(key, 0.0) + seconds

    jax.monitoring.register_event_duration_secs_listener(listen)
    times = []
    try:
        for _ in range(2):
            w, c = time.perf_counter(), time.process_time()
            T.train(model, data, cfg)
            times.append((time.perf_counter() - w, time.process_time() - c))
            if not times[1:]:
                res["depth100_compile_phases_s"] = dict(phases)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    res["compile_s_depth100"] = times[0][0] - times[1][0]
    res["compile_cpu_s_depth100"] = times[0][1] - times[1][1]


def seeds(data, rounds: int, res: dict) -> dict:
    """5: `train_seeds` for 5 seeds against one `train` call, building the networks included (both from configs)."""
    log("\n[5] seeds: MLP depth 8 x width 64 + BatchNorm, batch 64, 300 steps; 5 seeds vs one run, builds included")
    model_config = ModelConfig(depth=8, width=64, batchnorm=True)
    cfg = T.TrainConfig(optimizer="sgd", lr=0.05, clip_norm=1.0, weight_decay=1e-4, steps=300, chunk_steps=50)

    def one():
        T.train(model_config.build(data.image_shape), data, cfg)
        return cfg.steps

    def five():
        T.train_seeds(model_config, data, cfg, seeds=range(5))
        return cfg.steps

    one(), five()  # compile
    t = alternate({"train: 1 seed": one, "train_seeds: 5 seeds": five}, rounds)
    res["seeds5_cost_vs_one"] = paired(t["train_seeds: 5 seeds"], t["train: 1 seed"])
    return t


def precision(data, rounds: int, res: dict) -> dict:
    """8: the step in bfloat16 and float16 against float32 (helpers.precision), the 20 x 128 MLP + BatchNorm and
    the CNN, train() per step. Native bf16/fp16 matrix units (AVX512-BF16, AMX) make low precision cheap; a CPU
    without them converts, and one was measured 3.8x slower in bfloat16 (issue 13)."""
    log("\n[8] precision: float32 / bfloat16 / float16, train() per step")
    variants = {}
    for name, model, batch, steps in [("MLP 20 x 128", build_mlp(20, 128), 128, 100), ("CNN", build_cnn(), 64, 50)]:
        for dtype in ("float32", "bfloat16", "float16"):
            cfg = T.TrainConfig(lr=0.05, batch_size=batch, steps=steps, chunk_steps=50, precision=dtype)
            T.train(model, data, cfg)  # compile
            variants[f"{name}, {dtype}"] = train_timer(model, data, cfg)
    t = alternate(variants, rounds)
    for name in ("MLP 20 x 128", "CNN"):
        key = "mlp" if name.startswith("MLP") else "cnn"
        for dtype in ("bfloat16", "float16"):
            res[f"{key}_{dtype}_vs_float32"] = paired(t[f"{name}, {dtype}"], t[f"{name}, float32"])
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    res["machine"]["bf16_units"] = sorted({f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512_fp16")})
    return t


def diagnosis(data, res: dict) -> None:
    """9: seconds `helpers.diagnose.diagnose` takes on failed runs of the tutorial models, the first call for a
    network (its measurements compile) and a second call (compiled). Target: under 2 s."""
    from helpers.diagnose import diagnose

    log("\n[9] diagnose: seconds per call, first (compiles) and second")
    mlp, cnn = ModelConfig(depth=8, width=64), ModelConfig(kind="cnn", depth=3, width=16, batchnorm=True)
    failed = {
        "learning_rate, 8 x 64 MLP, sgd lr 2": (mlp, T.TrainConfig(lr=2.0)),
        "init_scale, 20 x 64 MLP at 0.5": (mlp.replace(depth=20, init_scale=0.5), T.TrainConfig(lr=0.05)),
        "batchnorm_mode, batch of 1": (mlp.replace(batchnorm=True), T.TrainConfig(lr=0.05, batch_size=1)),
        "low_precision, float16 loss scale 2^20": (mlp, T.TrainConfig(precision="float16", loss_scale=2.0**20)),
        "dead_units, CNN lr 20": (cnn, T.TrainConfig(lr=20.0)),
        "learning_rate, CNN tanh lr 20": (cnn.replace(activation="tanh"), T.TrainConfig(lr=20.0)),
    }
    times = {}
    for name, (model_config, config) in failed.items():
        net = model_config.build(data.image_shape)
        history = T.train(net, data, config)
        calls = []
        for _ in range(2):
            start = time.perf_counter()
            cause = diagnose(history, net, data).cause
            calls.append(time.perf_counter() - start)
        times[name] = calls
        log(f"  {name:42s} -> {cause:15s} first {calls[0]:.2f} s, again {calls[1]:.3f} s")
    res["diagnose_s"] = times
    res["diagnose_s_max_first_call"] = max(t[0] for t in times.values())


def sequences(rounds: int, res: dict) -> dict:
    """10: train() per step for the sequence models of notebooks 09 and 10: the tanh RNN and the LSTM on the adding
    problem (T = 20, width 32, batch 64; the recurrence is a lax.scan over time) and a 4-block transformer of width
    32 on associative recall (9 tokens)."""
    from helpers.data import adding_problem, recall_task

    log("\n[10] sequence models: train() per step")
    adding, recall = adding_problem(20), recall_task()
    variants = {}
    transformer = ModelConfig(kind="transformer", depth=4, width=32, init="xavier")
    for name, model_config, data, optimizer in [
        ("RNN, adding T = 20", ModelConfig(kind="rnn", depth=1, width=32, activation="tanh"), adding, "momentum"),
        ("LSTM, adding T = 20", ModelConfig(kind="lstm", depth=1, width=32), adding, "momentum"),
        ("transformer 4 x 32, recall", transformer, recall, "adam"),
    ]:
        cfg = T.TrainConfig(optimizer=optimizer, lr=1e-3, clip_norm=1.0, steps=200)
        model = model_config.build(data.image_shape, data.num_classes)
        T.train(model, data, cfg)  # compile
        variants[name] = train_timer(model, data, cfg)
    t = alternate(variants, rounds)
    for name, key in [("RNN", "rnn"), ("LSTM", "lstm"), ("transformer", "transformer")]:
        full = next(n for n in variants if n.startswith(name))
        res[f"{key}_us_per_step"] = med(t[full]) * 1e6
    return t


#: Notebook 07's deep network: 16 conv blocks of 16 channels, BatchNorm, residual blocks that start as the identity.
DEEP_CNN = ModelConfig(kind="cnn", depth=16, width=16, batchnorm=True, residual=True, zero_init_residual=True)
DEEP_TRAIN = T.TrainConfig(optimizer="momentum", lr=0.1, clip_norm=1.0, weight_decay=5e-4, chunk_steps=25)


def deep(data, budgets=(100, 150, 200, 300, 400), seeds=(0, 1, 2)) -> dict:
    """7: seconds of training the deep residual CNN needs to reach 97% test accuracy on the digits, on every seed.

    Each step budget is a run of its own from scratch (a shorter run is not the start of a longer one: the
    data order is the same, but nothing else differs either, so this is simply one schedule per budget). The
    time is `train`'s wall time with the step already compiled; the first compile is reported beside it.
    """
    log(f"\n[7] deep CNN: {DEEP_CNN} | {DEEP_TRAIN}; budgets {budgets}, seeds {seeds}")
    w = time.perf_counter()
    T.train(DEEP_CNN.build(data.image_shape), data, DEEP_TRAIN.replace(steps=1))
    rows = {"compile_s": time.perf_counter() - w}
    for steps in budgets:
        accs, times = [], []
        for seed in seeds:
            model = DEEP_CNN.replace(seed=seed).build(data.image_shape)
            w = time.perf_counter()
            T.train(model, data, DEEP_TRAIN.replace(steps=steps, seed=seed))
            times.append(time.perf_counter() - w)
            accs.append(T.evaluate(model, data.x_test, data.y_test))
        rows[steps] = {"test_accuracy": accs, "train_s": times}
        log(f"  {steps:4d} steps: test accuracy {min(accs):.1%} to {max(accs):.1%}, {statistics.median(times):.1f} s")
        if min(accs) >= 0.97:
            rows["s_to_97"], rows["steps_to_97"] = statistics.median(times), steps
            break
    return rows


def torch_python() -> str | None:
    """An interpreter that imports torch: this one, else $TORCH_PYTHON, else None."""
    try:
        import torch  # noqa: F401

        return sys.executable
    except ImportError:
        return os.environ.get("TORCH_PYTHON") or None


def versus_torch(data, rounds: int, res: dict) -> dict:
    """6: `train` against the same models and optimizers in PyTorch eager (benchmarks/torch_peer.py), alternating."""
    log("\n[6] vs PyTorch eager: the CNN (3 x 32 + BatchNorm, batch 64, Adam 1e-3, clip 1, decay 1e-4) and the")
    log("    20 x 128 MLP + BatchNorm (batch 128, SGD 0.05, clip 1, decay 1e-4); 100 steps a round")
    python = torch_python()
    if python is None:
        log(
            "    skipped: PyTorch is an optional peer and is not importable here. Install its CPU build in any "
            "Python (pip install torch --index-url https://download.pytorch.org/whl/cpu; PyPI's default wheel "
            "brings GBs of CUDA) and run again with TORCH_PYTHON=/path/to/that/python"
        )
        return {}
    steps = 100
    cnn_cfg = T.TrainConfig(
        optimizer="adam", lr=1e-3, clip_norm=1.0, weight_decay=1e-4, batch_size=64, steps=steps, chunk_steps=50
    )
    mlp_cfg = T.TrainConfig(
        optimizer="sgd", lr=0.05, clip_norm=1.0, weight_decay=1e-4, batch_size=128, steps=steps, chunk_steps=50
    )
    ours = {"ours: CNN, train()": (build_cnn(), cnn_cfg), "ours: MLP 20 x 128, train()": (build_mlp(20, 128), mlp_cfg)}
    for model, cfg in ours.values():
        T.train(model, data, cfg)  # compile
    peer = subprocess.Popen(
        [python, str(HERE / "torch_peer.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        res["torch"] = peer.stdout.readline().strip().removeprefix("ready ")

        def torch_timer(name: str):
            def call():
                peer.stdin.write(f"{name} {steps}\n")
                peer.stdin.flush()
                float(peer.stdout.readline())  # the peer's reply: it has finished
                return steps

            return call

        variants = {name: train_timer(model, data, cfg) for name, (model, cfg) in ours.items()}
        variants |= {"PyTorch eager: CNN": torch_timer("cnn"), "PyTorch eager: MLP 20 x 128": torch_timer("mlp")}
        t = alternate(variants, rounds)
    finally:
        peer.stdin.close()
        peer.wait()
    res["cnn_speedup_vs_torch_eager"] = paired(t["PyTorch eager: CNN"], t["ours: CNN, train()"])
    res["large_speedup_vs_torch_eager"] = paired(t["PyTorch eager: MLP 20 x 128"], t["ours: MLP 20 x 128, train()"])
    return t


# ------------------------------------------------------------------------------------------------ report


def verdict(key: str, value: float) -> str:
    op, target = TARGETS[key]
    ok = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
    return f"{'met' if ok else 'MISSED'} (target {op} {target:g})"


def table(sections: dict[str, dict]) -> str:
    lines = [f"{'variant':44s} {'us/step':>10s} {'min':>10s} {'CPU us/step':>12s}"]
    for title, t in sections.items():
        lines.append(f"-- {title}")
        for name, v in t.items():
            lines.append(f"{name:44s} {med(v) * 1e6:10.0f} {min(v['wall']) * 1e6:10.0f} {med(v, 'cpu') * 1e6:12.0f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds and steps: a smoke run, not a measurement")
    sections_help = "sections: small large chunking compile seeds torch deep precision diagnose sequences"
    p.add_argument("--only", nargs="*", default=None, help=sections_help)
    p.add_argument("--out", default=None, help="results file (default: benchmarks/results.json for a full run)")
    args = p.parse_args()
    rounds = 3 if args.quick else 15
    sections = args.only or [
        *("small", "large", "chunking", "compile", "seeds", "torch", "deep", "precision", "diagnose", "sequences")
    ]
    data = load_data()
    res: dict = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
        },
        "rounds": rounds,
    }
    start = time.perf_counter()
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        log(f"note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other processes share the CPU")
    tables = {}
    if "small" in sections:
        tables["small (section 1, 3)"] = small(data, rounds, 100 if args.quick else 300, res)
    if "large" in sections:
        tables["large (section 2)"] = large(data, 3 if args.quick else 6, 100, res)
    if "chunking" in sections:
        tables["chunking (section 2)"] = chunking(data, 3 if args.quick else 5, res)
    if "compile" in sections:
        compile_depth100(data, res)
    if "seeds" in sections:
        tables["seeds (section 5)"] = seeds(data, 3 if args.quick else 9, res)
    if "torch" in sections:
        tables["vs PyTorch eager (section 6)"] = versus_torch(data, 3 if args.quick else 7, res)
    if "precision" in sections:
        tables["precision (section 8)"] = precision(data, 3 if args.quick else 7, res)
    if "diagnose" in sections:
        diagnosis(data, res)
    if "sequences" in sections:
        tables["sequences (section 10)"] = sequences(3 if args.quick else 7, res)
    if "deep" in sections:
        res["deep_cnn"] = deep(data, (100, 200) if args.quick else (100, 150, 200, 300, 400))
        res["deep_cnn_s_to_97"] = res["deep_cnn"].get("s_to_97", math.inf)
    res["machine"]["load_average_at_end"] = os.getloadavg()
    res["samples_us_per_step"] = {  # every round's wall-clock sample, for a second look at the noise
        f"{title}: {name}": [round(x * 1e6, 1) for x in v["wall"]]
        for title, t in tables.items()
        for name, v in t.items()
    }
    res["total_s"] = time.perf_counter() - start

    print("\n" + table(tables))
    print("\nheadline numbers (ratios of medians; wall clock):")
    rows = [
        ("small_speedup_vs_nnx_jit", "x", "tutorial step time / train() step time"),
        ("cnn_speedup_vs_torch_eager", "x", "PyTorch eager step time / train() step time, the CNN"),
        ("large_speedup_vs_torch_eager", "x", "the same, the 20 x 128 MLP + BatchNorm"),
        ("diagnostics_overhead", "", "compiled chunk with / without diagnostics - 1"),
        ("compile_s_depth100", "s", f"(CPU {res.get('compile_cpu_s_depth100', math.nan):.2f} s)"),
        ("seeds5_cost_vs_one", "x", "train_seeds (5 seeds) / train (1 seed), builds included"),
        ("deep_cnn_s_to_97", "s", "deep residual CNN (07): training seconds to 97% test accuracy on 3 of 3 seeds"),
        ("diagnose_s_max_first_call", "s", "helpers.diagnose on failed runs: the slowest first call (compiles)"),
    ]
    for key, unit, note in rows:
        if key in res:
            print(f"  {key:32s} {res[key]:8.3f}{unit:2s} {verdict(key, res[key]):26s} {note}")
    for key in (
        "small_speedup_compiled_chunks_vs_nnx_jit",
        "large_fraction_of_matmul_peak",
        "diagnostics_overhead_cpu",
        "large_fraction_of_matmul_peak_best",
        "diagnostics_and_guard_overhead",
        "large_fraction_no_diagnostics",
        "large_fraction_bare_no_batchnorm",
        "matmul_128_fraction_of_peak",
        "large_fraction_of_matmul_128",
        "large_fraction_wall_ratio",
        "large_diagnostics_overhead",
        "cnn_us_per_step",
        "cnn_gflops",
        "cnn_scan_slowdown",
        "mlp_chunk1_slowdown",
        "compile_cpu_s_depth100",
        "small_step_vs_previous",
        "large_step_vs_previous",
        "mlp_bfloat16_vs_float32",
        "mlp_float16_vs_float32",
        "cnn_bfloat16_vs_float32",
        "cnn_float16_vs_float32",
    ):
        if key in res:
            print(f"  {key:40s} {res[key]:8.3f}")
    res["targets"] = {
        k: {"target": f"{op} {v:g}", "met": verdict(k, res[k]).startswith("met")}
        for k, (op, v) in TARGETS.items()
        if k in res
    }
    full = not (args.quick or args.only)
    out = Path(args.out) if args.out else (HERE / "results.json" if full else None)
    if out is not None:
        out.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(f"\n{'wrote ' + str(out) if out else 'no results file written (pass --out)'} ({res['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
