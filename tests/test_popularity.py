"""Most-popular baseline: ordering, padding never recommended, exclude_history against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from jaxrec.data.splits import leave_one_out
from jaxrec.data.synthetic import SyntheticConfig, generate
from jaxrec.data.types import Catalog, Dataset
from jaxrec.models.popularity import Popularity


def test_order_by_count_then_id():
    # Index = item id; item 0 (padding) has the largest count and must still never appear.
    model = Popularity(np.array([100, 3, 5, 3, 0, 5]))
    assert model.order.tolist() == [2, 5, 1, 3, 4]
    assert model.order.dtype == np.int32


def test_recommend_shape_and_dtype():
    model = Popularity(np.array([100, 3, 5, 3, 0, 5]))
    histories = np.array([[0, 0, 1], [2, 5, 1]], dtype=np.int32)
    out = model.recommend(histories, 3)
    assert out.shape == (2, 3) and out.dtype == np.int32
    assert out.tolist() == [[2, 5, 1], [2, 5, 1]]  # history kept by default (users re-buy)
    out[0, 0] = 99  # a writable copy, not a view on the model's order
    assert model.recommend(histories, 3)[0, 0] == 2


def test_fit_counts_training_part_only():
    catalog = Catalog(tuple(f"I{i}" for i in range(1, 10)))
    dataset = Dataset.from_sequences("hand", catalog, ["a", "b", "c"],
                                     [[1, 2, 3, 4, 5, 6], [2, 9, 3], [5, 5, 1, 7]])
    model = Popularity.fit(leave_one_out(dataset))
    # Training parts [1 2 3 4], [2], [5 5]: validation/test targets (5, 6, 9, 3, 1, 7) are not counted.
    assert model.counts.tolist() == [0, 1, 2, 1, 1, 2, 0, 0, 0, 0]
    assert model.order.tolist() == [2, 5, 1, 3, 4, 6, 7, 8, 9]
    assert model.name == "popularity"


def _brute_force_exclude(order: list[int], history: np.ndarray, k: int) -> list[int]:
    blocked = set(history.tolist())
    kept = [item for item in order if item not in blocked][:k]
    return kept + [-1] * (k - len(kept))


def test_exclude_history_against_brute_force():
    dataset = generate(SyntheticConfig(num_users=300, num_items=200, seed=5))
    split = leave_one_out(dataset)
    model = Popularity.fit(split, exclude_history=True)
    order = model.order.tolist()
    for max_length in (5, 50):
        histories = split.histories("test", max_length)
        for k in (1, 10, 20):
            out = model.recommend(histories, k)
            assert out.shape == (len(histories), k)
            expected = [_brute_force_exclude(order, h, k) for h in histories]
            assert out.tolist() == expected
            assert not np.isin(out, 0).any()
    # Not vacuous: some users' histories do block popular items.
    plain = Popularity.fit(split).recommend(split.histories("test", 50), 20)
    assert (plain != model.recommend(split.histories("test", 50), 20)).any()


def test_exclude_history_with_repeated_and_padded_history():
    model = Popularity(np.array([0, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), exclude_history=True)
    histories = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [3, 1, 3, 2], [10, 9, 0, 0]])
    assert model.recommend(histories, 3).tolist() == [[1, 2, 3], [2, 3, 4], [4, 5, 6], [1, 2, 3]]


def test_exclude_history_never_returns_history_items_in_small_catalogue():
    """Six items, three in the history, k=4: only three items can be recommended; the fourth slot is -1
    (Recommender protocol), never an item the user already has."""
    model = Popularity(np.array([0, 3, 2, 1, 0, 0, 0]), exclude_history=True)
    out = model.recommend(np.array([[0, 1, 2, 3]]), 4)
    assert out.tolist() == [[4, 5, 6, -1]]


def test_k_larger_than_catalogue_pads_with_invalid():
    """Three items, k=5: the Recommender protocol asks for [B, k] with -1 where no more items exist."""
    model = Popularity(np.array([0, 3, 2, 1]))
    out = model.recommend(np.zeros((2, 2), dtype=np.int32), 5)
    assert out.tolist() == [[1, 2, 3, -1, -1]] * 2


@pytest.mark.parametrize("k", [1, 7])
def test_k_equal_or_below_catalogue(k):
    model = Popularity(np.array([0, 1, 2, 3, 4, 5, 6, 7]))
    assert model.recommend(np.zeros((1, 3), dtype=np.int32), k).tolist() == [[7, 6, 5, 4, 3, 2, 1][:k]]
