"""Grain input pipeline over in-memory training examples.

Examples are column arrays (e.g. the (history, target) pairs of `LeaveOneOut.training_examples`). Each epoch has a
*batch plan*: a seeded assignment of example indices to global batches. Grain iterates over plan entries and each
entry is gathered with one numpy take per column, so there are no per-example Python objects. Properties:
  * seeded: the same seed gives the same batches; each epoch is a fresh permutation;
  * sharded per JAX process: every process builds the same plan and takes its own contiguous slice of each global
    batch, so processes see disjoint examples and the same padded shape at every step (multi-host jit needs that);
  * bucketed: with `bucket_lengths`, examples are grouped by the length of their padded column, shuffled within the
    group, and the padded column is trimmed to the bucket length: jit sees one shape per bucket and short histories
    do not pay for long ones;
  * checkpointable: the iterator's `get_state()` / `set_state()` resume exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence

import grain
import numpy as np

from jaxrec.data.types import PAD_ITEM

Batch = dict[str, np.ndarray]


def example_batches(columns: Mapping[str, np.ndarray], *, batch_size: int, seed: int, num_epochs: int | None = 1,
                    shuffle: bool = True, drop_remainder: bool = True, padded: Sequence[str] = ("history",),
                    bucket_lengths: Sequence[int] | None = None, shard_index: int | None = None,
                    shard_count: int | None = None) -> ExampleBatches:
    """Batches of `columns` (equal-length arrays keyed by name); iterate it for a checkpointable grain iterator.

    `batch_size` is per process. `padded` names left-padded [N, L] columns that bucketing trims from the left
    (buckets are chosen by the first of them); `bucket_lengths` (the largest >= L) enables it. Without
    `drop_remainder` (one process only), each bucket's final partial batch is kept. `num_epochs=None`
    repeats forever. The shard defaults to this JAX process (`jax.process_index()` of `jax.process_count()`).
    """
    lengths = {name: len(array) for name, array in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"columns must have equal length, got {lengths}")
    num_examples = next(iter(lengths.values()))
    shard_index, shard_count = _shard(shard_index, shard_count)
    if shard_count > 1 and not drop_remainder:
        raise ValueError("several processes need drop_remainder=True: every process must see the same batch "
                         "shape at every step")
    if num_examples < shard_count * (batch_size if drop_remainder else 1):
        raise ValueError(f"{num_examples} examples cannot fill one batch of {batch_size} on each of "
                         f"{shard_count} processes")
    for name in padded if bucket_lengths else ():  # padded columns only matter for bucketing
        if name not in columns:
            raise ValueError(f"padded column {name!r} is not among the columns {sorted(columns)}")
        if bucket_lengths and max(bucket_lengths) < columns[name].shape[1]:
            raise ValueError(f"bucket_lengths {tuple(bucket_lengths)} must reach the padded length "
                             f"{columns[name].shape[1]} of column {name!r}")

    padded_lengths = None
    if bucket_lengths:
        padded_lengths = (np.asarray(columns[padded[0]]) != PAD_ITEM).sum(axis=1)
    plan = _BatchPlan(num_examples, batch_size * shard_count, seed, shuffle, drop_remainder,
                      padded_lengths, tuple(sorted(bucket_lengths or ())))
    if not plan.batches_per_epoch:
        raise ValueError(f"no length bucket holds a full batch of {batch_size * shard_count} examples "
                         f"(bucket sizes {[len(g) for g in plan.groups]}); use fewer buckets or smaller batches")
    shard = slice(shard_index * batch_size, (shard_index + 1) * batch_size)

    def gather(step: int, _: int) -> Batch:
        index, length = plan.batch(step)
        local = index[shard]
        batch = {name: np.take(array, local, axis=0) for name, array in columns.items()}
        for name in padded if length else ():
            batch[name] = batch[name][:, batch[name].shape[1] - min(length, batch[name].shape[1]):]
        return batch

    steps = grain.MapDataset.range(plan.batches_per_epoch).repeat(num_epochs, reseed_each_epoch=False)
    return ExampleBatches(steps.map_with_index(gather).to_iter_dataset(), plan.batches_per_epoch)


@dataclasses.dataclass(frozen=True)
class ExampleBatches:
    """A grain `IterDataset` of batches plus how many batches make one epoch (for epoch-based schedules)."""

    dataset: grain.IterDataset
    batches_per_epoch: int

    def __iter__(self) -> grain.DatasetIterator:
        return iter(self.dataset)


class _BatchPlan:
    """Per-epoch assignment of example indices to global batches (cached one epoch at a time)."""

    def __init__(self, num_examples: int, global_batch: int, seed: int, shuffle: bool, drop_remainder: bool,
                 lengths: np.ndarray | None, buckets: tuple[int, ...]):
        self.global_batch, self.seed, self.shuffle, self.drop_remainder = global_batch, seed, shuffle, drop_remainder
        if lengths is None:
            self.groups = [np.arange(num_examples)]
            self.group_lengths = [0]
        else:
            bucket_of = np.searchsorted(np.asarray(buckets), lengths)
            self.groups = [np.flatnonzero(bucket_of == b) for b in range(len(buckets))]
            self.group_lengths = list(buckets)
        sizes = [len(g) // global_batch if drop_remainder else -(-len(g) // global_batch) for g in self.groups]
        self.batches_per_epoch = sum(sizes)
        self._epoch, self._batches = -1, []
        self._lock = threading.Lock()  # grain may call from several threads

    def batch(self, step: int) -> tuple[np.ndarray, int]:
        """(global example indices, bucket length or 0) of global step `step`."""
        epoch, within = divmod(step, self.batches_per_epoch)
        with self._lock:
            if epoch != self._epoch:
                self._epoch, self._batches = epoch, self._plan(epoch)
            return self._batches[within]

    def _plan(self, epoch: int) -> list[tuple[np.ndarray, int]]:
        rng = np.random.default_rng((self.seed, epoch))
        batches = []
        for group, length in zip(self.groups, self.group_lengths):
            order = rng.permutation(group) if self.shuffle else group
            stop = len(order) - len(order) % self.global_batch if self.drop_remainder else len(order)
            batches += [(order[i:i + self.global_batch], length) for i in range(0, stop, self.global_batch)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches


def _shard(index: int | None, count: int | None) -> tuple[int, int]:
    if index is None or count is None:
        import jax

        index = jax.process_index() if index is None else index
        count = jax.process_count() if count is None else count
    if not 0 <= index < count:
        raise ValueError(f"shard_index {index} outside 0..{count - 1}")
    return index, count
