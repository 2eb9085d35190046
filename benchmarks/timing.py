"""Timing our jitted train step the same way in every speed benchmark."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax

from jaxrec.train.mesh import shard_batch


def train_step_times(trainer: Any, state: Any, host_batches: Sequence[dict], warmup: int) -> tuple[list[float], Any]:
    """Seconds of `trainer.train_step` on each batch after the first `warmup` (batches placed on the mesh first, so
    transfers are not timed; each step waited for), and the state after the last step."""
    batches = [shard_batch(batch, trainer.mesh) for batch in host_batches]
    times = []
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        state, metrics = trainer.train_step(state, batch)
        jax.block_until_ready((state, metrics))
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return times, state
