"""Data-parallel placement over every device of the run with `jax.sharding` (no pmap, no code in the steps).

A 1-D mesh with axis "data" spans `jax.devices()`: the local devices in a single-process run, every
process's devices in a multi-process one (`pannjax.distributed`). The training state is replicated
(`PartitionSpec()`), each batch is split along its leading axis (`PartitionSpec("data")`), and the jitted
steps of `pannjax.train.steps` are left unchanged: XLA's SPMD partitioner propagates the input
shardings, computes per-device gradients and inserts the all-reduce of the (mean) loss gradient, so
one step over D devices equals the single-device step on the whole batch up to float summation order
(the JAX "distributed arrays and automatic parallelization" model). In a multi-process run each
process holds only its rows of a batch (`Dataset.batches(rows=...)`), which become its shards of the
global batch (`jax.make_array_from_process_local_data`).

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
    """A 1-D mesh named "data" over `devices` (default: every device of the run, all processes')."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array leaf of `tree` on all devices of `mesh`. In a multi-process run the leaves go through
    the host (every process holds the same values: same seed, same restored checkpoint), since `device_put`
    moves a device array onto devices of this process only."""
    sharding = NamedSharding(mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def place(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jax.device_put(np.asarray(jax.random.key_data(x)), sharding),
                                            impl=jax.random.key_impl(x))
        return jax.device_put(np.asarray(x), sharding) if isinstance(x, (jax.Array, np.ndarray)) else x

    return jax.tree_util.tree_map(place, tree)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, size: int | None = None) -> dict[str, jax.Array]:
    """Split each array of `batch` along its leading (example) axis over the "data" axis; replicate
    when the batch size is not a multiple of the device count. `size`: the global batch size, when `batch`
    may be this process's rows of it only (fewer than `size`): they become its shards of the global batch."""
    local = len(next(iter(batch.values())))
    if size is not None and local != size:
        sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
        return {k: jax.make_array_from_process_local_data(sharding, v, (size, *v.shape[1:])) for k, v in batch.items()}
    spec = PartitionSpec(DATA_AXIS) if local % mesh.size == 0 else PartitionSpec()
    return jax.device_put(batch, NamedSharding(mesh, spec))
