"""Device mesh and logical-axis sharding.

Parameters and key activations carry logical axis names; one rules table maps them onto the mesh axes
('data', 'fsdp', 'tensor'). The same code then runs on 1 CPU, 8 fake CPU devices, one GPU or a multi-host pod:
only the mesh shape changes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch is split over every data-parallel axis

# Logical axis -> mesh axis (or axes, or None = replicated). FSDP shards the embedding dimension of every weight;
# tensor parallelism shards the MLP, attention-head and vocabulary dimensions.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
)


def make_mesh(shape: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh; a size of -1 takes the devices the others leave (default: all data)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = {axis: int((shape or {}).get(axis, 1)) for axis in MESH_AXES}
    if shape is None or all(axis not in shape for axis in MESH_AXES):
        sizes["data"] = -1
    unknown = set(shape or {}) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; expected {MESH_AXES}")
    invalid = {axis: size for axis, size in sizes.items() if size < 1 and size != -1}
    if invalid:
        raise ValueError(f"mesh axis sizes must be positive or -1 (fill), got {invalid}")
    fill = [axis for axis, size in sizes.items() if size == -1]
    if len(fill) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {fill}")
    known = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices cannot be split into mesh {sizes}")
        sizes[fill[0]] = len(devices) // known
    if math.prod(sizes.values()) != len(devices):
        raise ValueError(f"mesh {sizes} needs {math.prod(sizes.values())} devices, {len(devices)} available")
    grid = np.asarray(devices).reshape([sizes[axis] for axis in MESH_AXES])
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


@contextlib.contextmanager
def sharding_context(mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> Iterator[None]:
    """Within it, NNX creates annotated variables already sharded, and jit sees the mesh."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(tuple(rules)):
        yield


def logical_to_spec(names: Sequence[str | None], rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> PartitionSpec:
    """The PartitionSpec that `rules` give a tuple of logical axis names."""
    table = dict(rules)
    return PartitionSpec(*(table.get(name) if name is not None else None for name in names))


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading axis split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Place this process's part of a global batch onto the mesh (works for one or many processes)."""
    return {name: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(value)), np.asarray(value))
            for name, value in batch.items()}


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, force: bool = False) -> None:
    """`jax.distributed.initialize` when a multi-process run is configured (no-op for a single process).

    With `force`, it is called even without arguments, so JAX detects the cluster itself (TPU pods, SLURM).
    """
    if not force and coordinator_address is None and num_processes in (None, 1):
        return
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    logger.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
                jax.process_count(), jax.local_device_count(), jax.device_count())
