"""Ranking metrics on hand-computed cases and against a per-user Python reference; the common evaluator."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from jaxrec.data.splits import leave_one_out
from jaxrec.data.types import Catalog, Dataset
from jaxrec.eval.evaluator import evaluate
from jaxrec.eval.metrics import DEFAULT_KS, ranking_metrics


def test_default_ks():
    assert DEFAULT_KS == (1, 5, 10, 20)


def test_hand_computed():
    ranked = np.array([[3, 1, 2], [4, 5, 6], [7, 8, 9]])
    targets = np.array([3, 6, 1])  # hit at rank 0, hit at rank 2, miss
    metrics = ranking_metrics(ranked, targets, num_items=10, ks=(1, 2, 3))
    assert metrics["recall@1"] == pytest.approx(1 / 3)
    assert metrics["ndcg@1"] == pytest.approx(1 / 3)
    assert metrics["recall@2"] == pytest.approx(1 / 3)
    assert metrics["ndcg@2"] == pytest.approx(1 / 3)
    assert metrics["recall@3"] == pytest.approx(2 / 3)
    assert metrics["ndcg@3"] == pytest.approx((1.0 + 0.5) / 3)  # 1 / log2(2 + 2) = 0.5
    assert metrics["coverage@1"] == pytest.approx(3 / 10)  # {3, 4, 7}
    assert metrics["coverage@2"] == pytest.approx(6 / 10)
    assert metrics["coverage@3"] == pytest.approx(9 / 10)
    for k in (1, 2, 3):
        assert metrics[f"invalid_rate@{k}"] == 0.0
    assert metrics["num_users"] == 3
    assert set(metrics) == {f"{m}@{k}" for m in ("recall", "ndcg", "coverage", "invalid_rate") for k in (1, 2, 3)} | {
        "num_users"}


def test_single_user_cases():
    assert ranking_metrics(np.array([[5, 1]]), np.array([5]), 5, ks=(1, 2))["ndcg@1"] == 1.0
    at_rank_2 = ranking_metrics(np.array([[1, 2, 5, 4]]), np.array([5]), 5, ks=(2, 3, 4))
    assert (at_rank_2["recall@2"], at_rank_2["ndcg@2"]) == (0.0, 0.0)
    assert at_rank_2["recall@3"] == 1.0 and at_rank_2["ndcg@3"] == 0.5 and at_rank_2["ndcg@4"] == 0.5
    miss = ranking_metrics(np.array([[1, 2, 3]]), np.array([4]), 5, ks=(3,))
    assert miss["recall@3"] == 0.0 and miss["ndcg@3"] == 0.0


def test_duplicates_count_once_at_first_position():
    metrics = ranking_metrics(np.array([[5, 2, 2, 2]]), np.array([2]), 5, ks=(1, 2, 4))
    assert metrics["recall@1"] == 0.0
    assert metrics["recall@2"] == 1.0 and metrics["recall@4"] == 1.0
    assert metrics["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert metrics["ndcg@4"] == pytest.approx(1 / math.log2(3))  # not 1/log2(3) + 1/log2(4) + ...
    assert metrics["coverage@4"] == pytest.approx(2 / 5)


def test_invalid_entries():
    ranked = np.array([[-1, 4, -1], [2, -1, 3]])
    metrics = ranking_metrics(ranked, np.array([4, 3]), 5, ks=(1, 3))
    assert metrics["invalid_rate@1"] == 0.5
    assert metrics["invalid_rate@3"] == 0.5
    assert metrics["coverage@1"] == pytest.approx(1 / 5)  # only item 2; -1 is not an item
    assert metrics["coverage@3"] == pytest.approx(3 / 5)  # {2, 3, 4}
    assert metrics["recall@1"] == 0.0 and metrics["recall@3"] == 1.0
    assert metrics["ndcg@3"] == pytest.approx((1 / math.log2(3) + 0.5) / 2)


def test_only_first_max_k_columns_count():
    # Lists longer than max(ks) are cut: the hit at rank 3 and item 9 at rank 4 are ignored.
    metrics = ranking_metrics(np.array([[1, 2, 3, 7, 9]]), np.array([7]), 9, ks=(3,))
    assert metrics["recall@3"] == 0.0
    assert metrics["coverage@3"] == pytest.approx(3 / 9)


def _reference(ranked, targets, num_items, ks):
    out = {}
    for k in ks:
        recalls, ndcgs, invalid, items = [], [], 0, set()
        for row, target in zip(ranked.tolist(), targets.tolist()):
            top = row[:k]
            rank = top.index(target) if target in top else None
            recalls.append(0.0 if rank is None else 1.0)
            ndcgs.append(0.0 if rank is None else 1.0 / math.log2(rank + 2))
            invalid += sum(v == -1 for v in top)
            items |= {v for v in top if v != -1}
        out[f"recall@{k}"] = sum(recalls) / len(recalls)
        out[f"ndcg@{k}"] = sum(ndcgs) / len(ndcgs)
        out[f"coverage@{k}"] = len(items) / num_items
        out[f"invalid_rate@{k}"] = invalid / (k * len(ranked))
    out["num_users"] = len(targets)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    num_users, num_items, width = 300, 40, 25
    ranked = rng.integers(1, num_items + 1, size=(num_users, width))
    ranked[rng.random(ranked.shape) < 0.1] = -1
    targets = rng.integers(1, num_items + 1, size=num_users)
    ks = (1, 5, 10, 20)
    expected = _reference(ranked, targets, num_items, ks)
    metrics = ranking_metrics(ranked, targets, num_items, ks)
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    assert 0 < metrics["recall@1"] < metrics["recall@20"] < 1  # the data exercise hits, misses and -1


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16])
def test_integer_dtypes_accepted(dtype):
    metrics = ranking_metrics(np.array([[2, 1]], dtype=dtype), np.array([1], dtype=dtype), 3, ks=(2,))
    assert metrics["ndcg@2"] == pytest.approx(1 / math.log2(3))


@pytest.mark.parametrize("bad_value, user, slot", [(0, 1, 2), (11, 0, 0), (-2, 2, 1)])
def test_error_item_outside_catalogue(bad_value, user, slot):
    ranked = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    ranked[user, slot] = bad_value
    message = f"user {user}, rank {slot}: item id {bad_value} is neither -1 (invalid) nor in the catalogue 1..10"
    with pytest.raises(ValueError, match=re.escape(message)):
        ranking_metrics(ranked, np.array([1, 2, 3]), 10, ks=(3,))


def test_error_lists_too_short():
    with pytest.raises(ValueError, match=re.escape("recommendation lists hold 3 items but metrics need K up to 5")):
        ranking_metrics(np.ones((2, 3), dtype=np.int64), np.array([1, 1]), 10, ks=(1, 5))


@pytest.mark.parametrize("ranked_shape, targets_shape", [((3, 5), (2,)), ((5,), (5,)), ((3, 5), (3, 1))])
def test_error_shape_mismatch(ranked_shape, targets_shape):
    message = f"expected ranked [users, K] and targets [users], got {ranked_shape} and {targets_shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        ranking_metrics(np.ones(ranked_shape, dtype=np.int64), np.ones(targets_shape, dtype=np.int64), 10, ks=(1,))


def test_error_float_dtype():
    with pytest.raises(ValueError, match=re.escape("ranked item ids must be integers, got dtype float64")):
        ranking_metrics(np.array([[1.0, 2.0]]), np.array([1]), 10, ks=(2,))


@pytest.mark.parametrize("bad_target", [0, 11, -1])
def test_error_targets_outside_catalogue(bad_target):
    with pytest.raises(ValueError, match=re.escape("targets must be item ids in 1..10")):
        ranking_metrics(np.array([[1], [2]]), np.array([1, bad_target]), 10, ks=(1,))


@pytest.mark.parametrize("ks", [(), (0, 5), (-1,)])
def test_error_bad_ks(ks):
    with pytest.raises(ValueError, match="ks must be positive cut-offs"):
        ranking_metrics(np.ones((1, 5), dtype=np.int64), np.array([1]), 10, ks=ks)


def test_error_no_users():
    with pytest.raises(ValueError, match="no users to evaluate"):
        ranking_metrics(np.ones((0, 5), dtype=np.int64), np.ones(0, dtype=np.int64), 10, ks=(5,))


# --------------------------------------------------------------------------------------------- evaluate()

NUM_ITEMS = 40
NUM_USERS = 30


def consecutive_split():
    """User u has items [u+1, u+2, u+3, u+4]: every target is the last history item + 1."""
    catalog = Catalog(tuple(f"I{i}" for i in range(1, NUM_ITEMS + 1)))
    sequences = [list(range(u + 1, u + 5)) for u in range(NUM_USERS)]
    return leave_one_out(Dataset.from_sequences("consecutive", catalog, [f"u{u}" for u in range(NUM_USERS)],
                                                sequences))


class PlacesTargetAtRank:
    """Puts the target (last history item + 1) at rank `last % 7` (ranks >= k are misses)."""

    name = "fake"

    def __init__(self):
        self.calls = []

    def recommend(self, histories, k):
        self.calls.append(histories.shape)
        out = []
        for row in histories:
            target = int(row[-1]) + 1
            filler = [(target + j - 1) % NUM_ITEMS + 1 for j in range(1, k + 1)]  # never the target
            rank = int(row[-1]) % 7
            if rank < k:
                filler[rank] = target
            out.append(filler)
        return np.array(out, dtype=np.int32)


def expected_metrics(last_items, ks):
    ranks = np.asarray(last_items) % 7
    metrics = {}
    for k in ks:
        metrics[f"recall@{k}"] = float(np.mean(ranks < k))
        metrics[f"ndcg@{k}"] = float(np.mean([1 / math.log2(r + 2) if r < k else 0.0 for r in ranks]))
    return metrics


@pytest.mark.parametrize("stage, last_offset", [("validation", 2), ("test", 3)])
def test_evaluate_known_ranks(stage, last_offset):
    split = consecutive_split()
    ks = (1, 3, 5)
    recommender = PlacesTargetAtRank()
    metrics = evaluate(recommender, split, stage, max_history=4, ks=ks)
    last_items = np.arange(NUM_USERS) + last_offset
    for key, value in expected_metrics(last_items, ks).items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["num_users"] == NUM_USERS
    assert recommender.calls == [(NUM_USERS, 4)]


def test_evaluate_batching_does_not_change_results():
    split = consecutive_split()
    whole = PlacesTargetAtRank()
    batched = PlacesTargetAtRank()
    one_batch = evaluate(whole, split, "test", max_history=3, ks=(1, 5), batch_size=1000)
    small = evaluate(batched, split, "test", max_history=3, ks=(1, 5), batch_size=7)
    assert small == one_batch
    assert batched.calls == [(7, 3)] * 4 + [(2, 3)]
    assert 0 < one_batch["recall@5"] < 1


def test_evaluate_user_subset():
    split = consecutive_split()
    users = np.array([3, 10, 11, 29])
    metrics = evaluate(PlacesTargetAtRank(), split, "test", max_history=2, ks=(1, 5), users=users)
    assert metrics["num_users"] == 4
    for key, value in expected_metrics(users + 3, (1, 5)).items():
        assert metrics[key] == pytest.approx(value), key


def test_group_metrics_hand_computed():
    """Items 1, 2 share group 1 and items 4, 5 group 3: recommending any item of the target's group is a hit."""
    from jaxrec.eval.evaluator import group_metrics

    groups = np.array([0, 1, 1, 2, 3, 3])
    ranked = np.array([[2, 3], [3, 4], [1, 3], [-1, 2]])
    targets = np.array([1, 5, 4, 2])
    metrics = group_metrics(ranked, targets, groups, "title", ks=(1, 2))
    assert metrics == pytest.approx({"title_recall@1": 1 / 4, "title_recall@2": 3 / 4, "title_ndcg@1": 1 / 4,
                                     "title_ndcg@2": (1 + 1 / math.log2(3) + 1 / math.log2(3)) / 4})
    assert ranking_metrics(ranked, targets, 5, ks=(2,))["recall@2"] == pytest.approx(1 / 4)  # only user 4's item


def test_evaluate_adds_group_metrics_for_recommenders_with_item_groups():
    """A recommender exposing item_groups gets `<name>_recall@K` beside the plain metrics; pairs of neighbours
    share a group, so the fake's target neighbour (target - 1 shares a group with the target when it is even)
    counts as a title hit."""
    split = consecutive_split()
    recommender = PlacesTargetAtRank()
    plain = evaluate(recommender, split, "test", max_history=4, ks=(1, 5))
    recommender.item_groups = np.concatenate([[0], (np.arange(NUM_ITEMS) // 2) + 1])  # {1,2}, {3,4}, ...
    recommender.item_group_name = "title"
    grouped = evaluate(recommender, split, "test", max_history=4, ks=(1, 5))
    assert {k: grouped[k] for k in plain} == plain
    assert grouped["title_recall@5"] >= grouped["recall@5"] and grouped["title_recall@1"] > grouped["recall@1"]
    histories, targets = split.histories("test", 4), split.targets("test")
    ranked = recommender.recommend(histories, 5)
    groups = recommender.item_groups
    expected = np.mean([(groups[r] == groups[t]).any() for r, t in zip(ranked, targets)])
    assert grouped["title_recall@5"] == pytest.approx(expected)
