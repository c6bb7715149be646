"""Data-parallel placement over every local device with `jax.sharding` (no pmap, no code in the steps).

A 1-D mesh with axis "data" spans `jax.local_devices()`. The training state is replicated
(`PartitionSpec()`), each batch is split along its leading axis (`PartitionSpec("data")`), and the jitted
steps of `pannjax.train.steps` are left unchanged: XLA's SPMD partitioner propagates the input
shardings, computes per-device gradients and inserts the all-reduce of the (mean) loss gradient, so
one step over D devices equals the single-device step on the whole batch up to float summation order
(the JAX "distributed arrays and automatic parallelization" model).

A batch whose size is not a multiple of D (e.g. the last, partial test batch) is replicated instead of
split, so every example is still seen exactly once. On one device everything is a no-op placement.
Test with several CPU "devices": `XLA_FLAGS=--xla_force_host_platform_device_count=2`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh named "data" over `devices` (default: all local devices)."""
    return Mesh(np.asarray(devices if devices is not None else jax.local_devices()), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array leaf of `tree` on all devices of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Split each array of `batch` along its leading (example) axis over the "data" axis; replicate
    when the batch size is not a multiple of the device count."""
    size = len(next(iter(batch.values())))
    spec = PartitionSpec(DATA_AXIS) if size % mesh.size == 0 else PartitionSpec()
    return jax.device_put(batch, NamedSharding(mesh, spec))
