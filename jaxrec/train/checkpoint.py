"""Orbax checkpoints: train state + data-iterator state + trainer bookkeeping, async, last N + best kept."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

_policies = ocp.checkpoint_managers


class Checkpointer:
    """Saves `state` (any pytree of arrays, sharded or not), `data` and `meta` (JSON) under `directory/<step>`.

    Keeps the `keep_last` most recent checkpoints plus the best one by `metrics[best_metric]` (checkpoints saved
    without metrics never count as best). Saving is asynchronous; orbax writes to a temporary folder and renames it,
    so a run killed mid-save resumes from the last complete checkpoint.
    """

    def __init__(self, directory: str | Path, *, keep_last: int = 2, best_metric: str | None = None,
                 best_mode: str = "max", async_save: bool = True):
        self.best_metric = best_metric
        policies = [_policies.LatestN(keep_last)]
        if best_metric is not None:
            policies.append(_policies.BestN(get_metric_fn=lambda metrics: metrics[best_metric],
                                            reverse=best_mode == "min", n=1,
                                            keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(preservation_policy=_policies.AnyPreservationPolicy(policies),
                                               enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, *, data: dict, meta: dict, metrics: dict | None = None) -> None:
        # Copies: orbax writes the JSON in the background, after `save` returns, and the caller goes on mutating.
        data, meta = copy.deepcopy(data), copy.deepcopy(meta)
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=ocp.args.JsonSave(data), meta=ocp.args.JsonSave(meta)),
                          metrics=metrics, force=True)

    def restore(self, step: int, like: Any) -> tuple[Any, dict, dict]:
        """Restore checkpoint `step` into the structure, dtypes and shardings of `like`."""
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
        return restored.state, restored.data, restored.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
