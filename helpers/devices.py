"""Data parallelism with JAX's own machinery: a `Mesh` of devices, the batch sharded over it, parameters replicated::

    train(model, data, TrainConfig(devices=8))                        # BatchNorm statistics over the whole batch
    train(model, data, TrainConfig(devices=8, sync_batchnorm=False))  # BatchNorm statistics per device

With `sync_batchnorm=True` nothing in the step changes: `jax.jit` compiles the single-device program for the mesh
(GSPMD), every reduction over the batch (the loss's mean, BatchNorm's statistics, the gradient's sum over the
examples) becomes a reduction across devices, and the gradient that clipping and the diagnostics see is the
global one. With `sync_batchnorm=False` the forward and backward pass run under `jax.shard_map`, where each device
sees only its own rows and BatchNorm normalizes them with their own statistics (see `per_device`).

On one machine, `XLA_FLAGS=--xla_force_host_platform_device_count=8` (set before JAX starts) splits the CPU into 8
devices; on GPUs `jax.devices()` lists them; over several hosts `jax.distributed.initialize()` joins them.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

#: The name of the mesh's one axis: the batch is split along it.
AXIS = "batch"


def check_devices(devices: int) -> None:
    """ValueError naming `devices` unless that many devices are available to this process."""
    available = jax.device_count()
    if devices > available:
        raise ValueError(
            f"devices must be <= the {available} device(s) JAX sees ({jax.devices()[0].platform}), got {devices}; "
            "on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX is imported"
        )


def make_mesh(devices: int) -> Mesh:
    """A one-axis mesh ("batch") over the first `devices` devices."""
    check_devices(devices)
    return Mesh(np.array(jax.devices()[:devices]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (the parameters, the optimizer state, the data set)."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Axis `batch_axis` split into equal, consecutive blocks of rows, one per device."""
    return NamedSharding(mesh, P(*([None] * batch_axis), AXIS))


def per_device(mesh: Mesh, loss_and_grads):
    """`loss_and_grads` run under `jax.shard_map`: each device computes on its own rows only (unsynchronized BatchNorm).

    `loss_and_grads(graphdef, params, rest, x, y, axis_name)` is `helpers.step.loss_and_grads`. On each device the
    model sees `batch_size / devices` examples, so BatchNorm normalizes them with their own mean and variance. The
    loss is averaged across devices (`pmean`) *before* it is differentiated, so the gradient that comes out is the
    global mean gradient, the same on every device, and clipping it afterwards is global-norm clipping. (Clipping
    each device's own gradient before a `pmean` would be another update: notebook 11 measures it.) The running
    statistics become the devices' average.

    Why average the loss rather than the gradients: under `shard_map` (with its default `check_vma=True`) the
    gradient with respect to replicated parameters comes out already combined across devices, as a *sum*; with the
    loss averaged first, that sum is the mean gradient.

    Why `shard_map` and not a reshape of the batch into (devices, rows) inside BatchNorm: it is how real per-device
    code is written (each device runs the program on its shard), and it needs no change to the model.
    """

    def local(graphdef, params, rest, x, y):
        loss, new_rest, grads = loss_and_grads(graphdef, params, rest, x, y, axis_name=AXIS)
        return loss, jax.lax.pmean(new_rest, AXIS), grads

    def run(graphdef, params, rest, x, y):
        specs = dict(mesh=mesh, in_specs=(P(), P(), P(AXIS), P(AXIS)), out_specs=P())
        return jax.shard_map(functools.partial(local, graphdef), **specs)(params, rest, x, y)

    return run
