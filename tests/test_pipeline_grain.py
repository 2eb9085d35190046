"""Grain input pipeline (jaxrec/data/pipeline.py): seeding, epochs, sharding, bucketing, checkpointing, errors."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest

from jaxrec.data.pipeline import example_batches

WIDTH = 8


def make_columns(num_examples: int = 103, seed: int = 0, max_len: int = WIDTH) -> dict[str, np.ndarray]:
    """Left-padded histories with 1..max_len real items; `target` is the example's index (an id to track it)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=num_examples)
    history = np.zeros((num_examples, WIDTH), dtype=np.int32)
    for row, length in enumerate(lengths):
        history[row, WIDTH - length:] = rng.integers(1, 500, size=length)
    return {"history": history, "target": np.arange(num_examples, dtype=np.int32)}


def batches(columns, num_batches=None, **kwargs):
    kwargs.setdefault("shard_index", 0)
    kwargs.setdefault("shard_count", 1)
    dataset = example_batches(columns, **kwargs)
    return list(itertools.islice(iter(dataset), num_batches))


def assert_same(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_same_seed_same_batches():
    columns = make_columns()
    first = batches(columns, batch_size=10, seed=3, num_epochs=2)
    second = batches(columns, batch_size=10, seed=3, num_epochs=2)
    assert_same(first, second)
    other = batches(columns, batch_size=10, seed=4, num_epochs=2)
    assert any(not np.array_equal(a["target"], b["target"]) for a, b in zip(first, other))


def test_rows_stay_aligned_across_columns():
    columns = make_columns()
    for batch in batches(columns, batch_size=10, seed=0):
        np.testing.assert_array_equal(batch["history"], columns["history"][batch["target"]])
        assert batch["history"].dtype == np.int32


def test_each_epoch_is_a_fresh_permutation():
    columns = make_columns()
    out = batches(columns, batch_size=10, seed=0, num_epochs=2, drop_remainder=False)
    assert len(out) == 2 * 11  # ceil(103 / 10) per epoch
    epochs = [np.concatenate([b["target"] for b in out[e * 11:(e + 1) * 11]]) for e in range(2)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(103))  # exactly once per epoch
    assert epochs[0].tolist() != epochs[1].tolist()
    assert epochs[0].tolist() != list(range(103))  # shuffled


@pytest.mark.parametrize("bucket_lengths", [None, (2, 4, 8)])
def test_every_example_once_per_epoch_without_drop(bucket_lengths):
    columns = make_columns()
    out = batches(columns, batch_size=8, seed=1, num_epochs=3, drop_remainder=False, bucket_lengths=bucket_lengths)
    counts = Counter(t for b in out for t in b["target"].tolist())
    assert counts == Counter({t: 3 for t in range(103)})
    assert all(1 <= len(b["target"]) <= 8 for b in out)


def test_drop_remainder_gives_full_batches():
    columns = make_columns()
    out = batches(columns, batch_size=10, seed=0)
    assert len(out) == 10
    assert all(b["target"].shape == (10,) and b["history"].shape == (10, WIDTH) for b in out)
    seen = np.concatenate([b["target"] for b in out])
    assert len(set(seen.tolist())) == 100  # 3 dropped, none repeated


def test_no_shuffle_keeps_order():
    columns = make_columns(20)
    out = batches(columns, batch_size=5, seed=0, shuffle=False)
    assert [b["target"].tolist() for b in out] == [list(range(i, i + 5)) for i in range(0, 20, 5)]


@pytest.mark.parametrize("bucket_lengths", [None, (3, 5, 8)])
def test_shards_partition_the_global_batch(bucket_lengths):
    columns = make_columns(211)
    shard_count, per_shard = 3, 4
    common = dict(seed=7, num_epochs=2, bucket_lengths=bucket_lengths)
    global_batches = batches(columns, batch_size=shard_count * per_shard, **common)
    shards = [batches(columns, batch_size=per_shard, shard_index=i, shard_count=shard_count, **common)
              for i in range(shard_count)]
    assert all(len(s) == len(global_batches) for s in shards)
    assert len(global_batches) >= 2 * (211 // 12 - (3 if bucket_lengths else 0))
    for step, full in enumerate(global_batches):
        parts = [s[step] for s in shards]
        for key in ("history", "target"):
            assert len({p[key].shape for p in parts}) == 1, f"step {step}: shapes differ across shards"
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), full[key])
        assert parts[0]["target"].shape == (per_shard,)
        targets = [set(p["target"].tolist()) for p in parts]
        assert sum(len(t) for t in targets) == len(set().union(*targets))  # disjoint


def test_shards_need_drop_remainder():
    # Partial batches would give processes different shapes at the same step, which multi-host jit cannot run.
    with pytest.raises(ValueError, match="drop_remainder=True"):
        batches(make_columns(103), batch_size=4, shard_index=0, shard_count=3, seed=2, drop_remainder=False)


def test_bucketing_trims_to_smallest_sufficient_bucket():
    columns = make_columns(300, seed=5)
    buckets = (2, 5, 8)
    real = {t: row[row != 0].tolist() for t, row in enumerate(columns["history"])}
    out = batches(columns, batch_size=6, seed=0, num_epochs=1, drop_remainder=False, bucket_lengths=buckets)
    widths = Counter()
    for batch in out:
        history = batch["history"]
        width = history.shape[1]
        longest = max(len(real[t]) for t in batch["target"].tolist())
        assert width == min(b for b in buckets if b >= longest)
        widths[width] += 1
        for row, target in zip(history, batch["target"].tolist()):
            assert row[row != 0].tolist() == real[target]  # no real item cut off
            assert row[-len(real[target]):].tolist() == real[target]  # still left-padded
    assert set(widths) == set(buckets)
    assert sum(len(b["target"]) for b in out) == 300


def test_bucketing_with_bucket_equal_to_width_and_unsorted_buckets():
    columns = make_columns(60, seed=1)
    out = batches(columns, batch_size=4, seed=0, drop_remainder=False, bucket_lengths=(8, 3))
    for batch in out:
        lengths = (batch["history"] != 0).sum(axis=1)
        assert batch["history"].shape[1] == (3 if lengths.max() <= 3 else 8)


def test_checkpoint_resume():
    columns = make_columns(40)
    kwargs = dict(batch_size=10, seed=9, num_epochs=2, shard_index=0, shard_count=1)  # 4 batches per epoch
    iterator = iter(example_batches(columns, **kwargs))
    for _ in range(3):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(2)]  # crosses into the second epoch
    fresh = iter(example_batches(columns, **kwargs))
    fresh.set_state(state)
    assert_same([next(fresh) for _ in range(2)], expected)
    # And the full run is the same as an uninterrupted one.
    assert_same(batches(columns, **kwargs)[3:5], expected)


def test_checkpoint_resume_with_buckets():
    columns = make_columns(120)
    kwargs = dict(batch_size=8, seed=1, num_epochs=None, bucket_lengths=(4, 8), shard_index=1, shard_count=2)
    iterator = iter(example_batches(columns, **kwargs))
    for _ in range(3):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(2)]
    fresh = iter(example_batches(columns, **kwargs))
    fresh.set_state(state)
    assert_same([next(fresh) for _ in range(2)], expected)


def test_num_epochs_none_repeats():
    columns = make_columns(30)
    out = batches(columns, num_batches=3 * 6 + 2, batch_size=5, seed=0, num_epochs=None)
    assert len(out) == 20
    for epoch in range(3):
        targets = np.concatenate([b["target"] for b in out[epoch * 6:(epoch + 1) * 6]])
        assert sorted(targets.tolist()) == list(range(30))
    assert out[0]["target"].tolist() != out[6]["target"].tolist() or out[1]["target"].tolist() != out[7][
        "target"].tolist()


def test_error_unequal_column_lengths():
    columns = {"history": np.zeros((10, 4), dtype=np.int32), "target": np.zeros(9, dtype=np.int32)}
    with pytest.raises(ValueError, match=re.escape("columns must have equal length, got {'history': 10, "
                                                   "'target': 9}")):
        example_batches(columns, batch_size=2, seed=0, shard_index=0, shard_count=1)


def test_error_buckets_do_not_reach_width():
    with pytest.raises(ValueError, match=re.escape("bucket_lengths (2, 4) must reach the padded length 8 of "
                                                   "column 'history'")):
        example_batches(make_columns(), batch_size=2, seed=0, bucket_lengths=(2, 4), shard_index=0, shard_count=1)


def test_error_missing_padded_column():
    with pytest.raises(ValueError, match=re.escape("padded column 'tokens' is not among the columns "
                                                   "['history', 'target']")):
        example_batches(make_columns(), batch_size=2, seed=0, padded=("tokens",), bucket_lengths=(4, WIDTH),
                        shard_index=0, shard_count=1)
    # Without bucketing, padded columns are not used, so a dataset without "history" needs no `padded=()`.
    example_batches({"sequence": make_columns()["history"]}, batch_size=2, seed=0, shard_index=0, shard_count=1)


def test_error_bad_shard():
    with pytest.raises(ValueError, match=re.escape("shard_index 2 outside 0..1")):
        example_batches(make_columns(), batch_size=2, seed=0, shard_index=2, shard_count=2)


def test_error_too_few_examples():
    with pytest.raises(ValueError, match=re.escape("10 examples cannot fill one batch of 4 on each of 3 "
                                                   "processes")):
        example_batches(make_columns(10), batch_size=4, seed=0, shard_index=0, shard_count=3)


def test_error_buckets_leave_no_full_batch():
    """10 examples, batch 4, buckets holding 3, 3, 3 and 1 of them: with drop_remainder no batch can be formed.
    That must be an error, not an iterator that silently yields nothing (forever, with num_epochs=None)."""
    history = np.zeros((10, 6), dtype=np.int32)
    for row, length in enumerate([1, 1, 1, 2, 2, 2, 3, 3, 3, 6]):
        history[row, 6 - length:] = row + 1
    columns = {"history": history, "target": np.arange(10)}
    with pytest.raises(ValueError):
        example_batches(columns, batch_size=4, seed=0, bucket_lengths=(1, 2, 4, 6), shard_index=0, shard_count=1)


def test_default_shard_is_this_jax_process():
    import jax

    assert (jax.process_index(), jax.process_count()) == (0, 1)
    columns = make_columns(50)
    default = list(example_batches(columns, batch_size=10, seed=5))
    explicit = batches(columns, batch_size=10, seed=5)
    assert_same(default, explicit)
