"""Leave-one-out split: hand-checked small case, brute-force references on synthetic data, real Beauty counts."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from jaxrec.data.splits import leave_one_out
from jaxrec.data.synthetic import SyntheticConfig, generate
from jaxrec.data.types import Catalog, DataError, Dataset


def hand_dataset() -> Dataset:
    catalog = Catalog(tuple(f"I{i}" for i in range(1, 10)))
    sequences = [
        [1, 2, 3, 4, 5, 6],  # u0: train [1 2 3 4], validation 5, test 6
        [7, 8],  # u1: too short
        [2, 9, 3],  # u2: train [2], validation 9, test 3
        [],  # u3: empty, too short
        [5, 5, 1, 7],  # u4: train [5 5], validation 1, test 7
    ]
    return Dataset.from_sequences("hand", catalog, ["u0", "u1", "u2", "u3", "u4"], sequences)


@pytest.fixture(scope="module")
def synthetic():
    # min_length=1 so that some users are too short for the split.
    return generate(SyntheticConfig(num_users=400, num_items=150, min_length=1, mean_length=6.0, seed=3))


def test_users_and_report(caplog):
    with caplog.at_level(logging.WARNING):
        split = leave_one_out(hand_dataset())
    assert split.num_users == 3
    assert split.users.tolist() == [0, 2, 4]
    assert split.starts.tolist() == [0, 8, 11]
    assert split.ends.tolist() == [6, 11, 15]
    assert split.report == {"users": 3, "users_dropped_too_short": 2, "interactions_dropped_too_short": 2}
    assert "dropped 2 of 5 users" in caplog.text


def test_targets():
    split = leave_one_out(hand_dataset())
    assert split.targets("validation").tolist() == [5, 9, 1]
    assert split.targets("test").tolist() == [6, 3, 7]
    assert split.targets("test").dtype == np.int32


def test_unknown_stage_is_an_error():
    split = leave_one_out(hand_dataset())
    for method in (split.targets, lambda stage: split.histories(stage, 3), split.cold_start_users):
        with pytest.raises(ValueError, match="unknown stage 'val': expected one of 'validation', 'test'"):
            method("val")


def test_histories_left_padded_and_truncated():
    split = leave_one_out(hand_dataset())
    np.testing.assert_array_equal(split.histories("validation", 3), [[2, 3, 4], [0, 0, 2], [0, 5, 5]])
    np.testing.assert_array_equal(split.histories("test", 3), [[3, 4, 5], [0, 2, 9], [5, 5, 1]])
    np.testing.assert_array_equal(split.histories("validation", 6),
                                  [[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 0, 2], [0, 0, 0, 0, 5, 5]])
    np.testing.assert_array_equal(split.histories("test", 1), [[5], [9], [1]])
    assert split.histories("test", 3).dtype == np.int32
    with pytest.raises(ValueError, match="max_length must be >= 1, got 0"):
        split.histories("test", 0)


def test_train_sequences():
    split = leave_one_out(hand_dataset())
    np.testing.assert_array_equal(split.train_sequences(3), [[2, 3, 4], [0, 0, 2], [0, 5, 5]])
    np.testing.assert_array_equal(split.train_sequences(5), split.histories("validation", 5))


def test_train_items():
    split = leave_one_out(hand_dataset())
    assert split.train_items().tolist() == [1, 2, 3, 4, 2, 5, 5]
    assert split.train_ends.tolist() == [4, 9, 13]


def test_training_examples_exact():
    split = leave_one_out(hand_dataset())
    histories, targets, users = split.training_examples(3)
    np.testing.assert_array_equal(histories, [[0, 0, 1], [0, 1, 2], [1, 2, 3], [0, 0, 5]])
    assert targets.tolist() == [2, 3, 4, 5]
    assert users.tolist() == [0, 0, 0, 2]  # indices into the split's users (u0, u0, u0, u4)
    assert histories.dtype == np.int32
    histories, targets, users = split.training_examples(1)
    np.testing.assert_array_equal(histories, [[1], [2], [3], [5]])


def test_no_training_examples():
    # Every user has exactly 3 items: a training part of 1 item gives no example, with the right shapes.
    dataset = Dataset.from_sequences("three", Catalog(("A", "B", "C")), ["a", "b"], [[1, 2, 3], [3, 2, 1]])
    histories, targets, users = leave_one_out(dataset).training_examples(4)
    assert histories.shape == (0, 4) and targets.shape == (0,) and users.shape == (0,)


def test_cold_start_users_hand():
    split = leave_one_out(hand_dataset())
    # Training items {1 2 3 4 5}: test targets 6, 3, 7 -> users 0 and 2; validation targets 5, 9, 1 -> user 1.
    assert split.cold_start_users("test").tolist() == [0, 2]
    assert split.cold_start_users("validation").tolist() == [1]
    assert split.cold_start_users().tolist() == [0, 2]


def test_on_short_error_names_user():
    with pytest.raises(DataError) as info:
        leave_one_out(hand_dataset(), on_short="error")
    assert str(info.value) == ("dataset 'hand': user 'u1' (row 1) has 2 items; leave-one-out needs at least 3 "
                               "(2 such users in total)")


def test_no_user_long_enough():
    dataset = Dataset.from_sequences("tiny", Catalog(("A", "B")), ["a", "b"], [[1, 2], [2]])
    with pytest.raises(DataError, match=re.escape("dataset 'tiny': no user has the 3 items leave-one-out needs")):
        leave_one_out(dataset)


def test_no_short_users_no_drop():
    dataset = Dataset.from_sequences("ok", Catalog(("A", "B")), ["a", "b"], [[1, 2, 1], [2, 2, 2, 1]])
    split = leave_one_out(dataset, on_short="error")
    assert split.report == {"users": 2, "users_dropped_too_short": 0, "interactions_dropped_too_short": 0}


# ------------------------------------------------------------------------------ brute force on synthetic


def _brute_force(dataset: Dataset):
    parts = {}
    for row in range(dataset.num_users):
        sequence = dataset.sequence(row).tolist()
        if len(sequence) >= 3:
            parts[row] = sequence
    return parts


def _pad(history: list[int], length: int) -> list[int]:
    history = history[-length:]
    return [0] * (length - len(history)) + history


def test_split_against_brute_force(synthetic):
    parts = _brute_force(synthetic)
    split = leave_one_out(synthetic)
    short = [r for r in range(synthetic.num_users) if len(synthetic.sequence(r)) < 3]
    assert len(short) > 10  # the fixture really has users to drop
    assert split.users.tolist() == sorted(parts)
    assert split.report["users_dropped_too_short"] == len(short)
    assert split.report["interactions_dropped_too_short"] == sum(len(synthetic.sequence(r)) for r in short)
    assert split.targets("test").tolist() == [s[-1] for s in parts.values()]
    assert split.targets("validation").tolist() == [s[-2] for s in parts.values()]
    for length in (1, 4, 50):
        assert split.histories("validation", length).tolist() == [_pad(s[:-2], length) for s in parts.values()]
        assert split.histories("test", length).tolist() == [_pad(s[:-1], length) for s in parts.values()]
    assert split.train_items().tolist() == [i for s in parts.values() for i in s[:-2]]


@pytest.mark.parametrize("max_length", [1, 3, 20])
def test_training_examples_against_brute_force(synthetic, max_length):
    parts = list(_brute_force(synthetic).values())
    expected_h, expected_t, expected_u = [], [], []
    for index, sequence in enumerate(parts):
        train = sequence[:-2]
        for position in range(1, len(train)):
            expected_h.append(_pad(train[:position], max_length))
            expected_t.append(train[position])
            expected_u.append(index)
    histories, targets, users = leave_one_out(synthetic).training_examples(max_length)
    assert len(targets) == sum(max(len(s) - 2 - 1, 0) for s in parts)
    assert histories.shape == (len(expected_t), max_length)
    assert histories.tolist() == expected_h
    assert targets.tolist() == expected_t
    assert users.tolist() == expected_u


def test_cold_start_against_brute_force(synthetic):
    parts = list(_brute_force(synthetic).values())
    seen = {i for s in parts for i in s[:-2]}
    split = leave_one_out(synthetic)
    for stage, offset in (("test", 1), ("validation", 2)):
        expected = [u for u, s in enumerate(parts) if s[-offset] not in seen]
        assert split.cold_start_users(stage).tolist() == expected
    assert len(split.cold_start_users("test")) > 0  # the check above is not vacuous


def test_train_fraction_keeps_nested_user_subsets_and_all_evaluation(synthetic):
    """`with_train_fraction`: the training views come from round(f x U) users of one fixed permutation (nested
    across fractions), histories and targets (evaluation) still cover everyone, and 1.0 is the split itself."""
    split = leave_one_out(synthetic)
    assert split.with_train_fraction(1.0) is split
    quarter, half = split.with_train_fraction(0.25), split.with_train_fraction(0.5)
    assert len(quarter.training_users) == round(0.25 * split.num_users)
    assert set(quarter.training_users) < set(half.training_users)
    np.testing.assert_array_equal(quarter.training_users, split.with_train_fraction(0.25).training_users)
    np.testing.assert_array_equal(half.histories("test", 8), split.histories("test", 8))
    np.testing.assert_array_equal(half.targets("validation"), split.targets("validation"))
    kept = half.training_users
    np.testing.assert_array_equal(half.train_sequences(8), split.train_sequences(8)[kept])
    histories, targets, users = half.training_examples(6)
    all_histories, all_targets, all_users = split.training_examples(6)
    rows = np.isin(all_users, kept)
    np.testing.assert_array_equal(users, all_users[rows])
    np.testing.assert_array_equal(histories, all_histories[rows])
    np.testing.assert_array_equal(targets, all_targets[rows])
    counts = np.bincount(half.train_items(), minlength=synthetic.num_items + 1)
    expected = np.bincount(split.train_sequences(200)[kept].ravel(), minlength=synthetic.num_items + 1)
    np.testing.assert_array_equal(counts[1:], expected[1:])
    assert half.report["training_users"] == len(kept) and half.report["train_fraction"] == 0.5
    for bad in (0.0, 1.5):
        with pytest.raises(DataError, match="train_fraction must be in"):
            split.with_train_fraction(bad)


# -------------------------------------------------------------------------------------------- real data


def test_real_beauty_split(beauty):
    split = leave_one_out(beauty, on_short="error")  # Beauty is 5-core: nobody is too short
    assert split.num_users == 22_363
    histories, targets, _users = split.training_examples(50)
    assert len(targets) == 198_502 - 3 * 22_363 == 131_413
    assert histories.shape == (131_413, 50)
    assert len(split.train_items()) == 198_502 - 2 * 22_363
    # Beauty user 1 is [1, 2, 3, 4, 5]: train [1 2 3], validation 4, test 5.
    assert split.targets("test")[0] == 5 and split.targets("validation")[0] == 4
    assert split.histories("validation", 4)[0].tolist() == [0, 1, 2, 3]
    assert histories[:2, -3:].tolist() == [[0, 0, 1], [0, 1, 2]] and targets[:2].tolist() == [2, 3]
