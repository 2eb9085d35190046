"""Full-catalogue ranking metrics for leave-one-out evaluation (one target per user).

Recall@K is 1 when the target is among the first K recommendations; NDCG@K is 1 / log2(rank + 2) for a hit at
0-based rank < K, else 0 (with a single relevant item the ideal DCG is 1). A target recommended twice counts once,
at its first position. Entries equal to -1 are invalid recommendations (e.g. a beam that reached no item).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxrec.data.types import INVALID_ITEM

DEFAULT_KS = (1, 5, 10, 20)


def ranking_metrics(ranked: np.ndarray, targets: np.ndarray, num_items: int,
                    ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean Recall@K / NDCG@K over users, plus coverage@K (share of the catalogue recommended to anyone in the
    top K) and invalid_rate@K (share of top-K slots holding -1).

    ranked: [U, >= max(ks)] item ids in rank order; targets: [U] item ids in 1..num_items.
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    _check(ranked, targets, num_items, ks)
    max_k = max(ks)
    top = ranked[:, :max_k]
    hits = top == targets[:, None]
    any_hit = hits.any(axis=1)
    rank = np.where(any_hit, hits.argmax(axis=1), max_k)  # first hit; max_k = miss
    gains = np.where(any_hit, 1.0 / np.log2(rank + 2.0), 0.0)
    valid = top != INVALID_ITEM
    metrics: dict[str, float] = {}
    for k in sorted(ks):
        hit_k = rank < k
        metrics[f"recall@{k}"] = float(hit_k.mean())
        metrics[f"ndcg@{k}"] = float(np.where(hit_k, gains, 0.0).mean())
    for k in sorted(ks):
        recommended = top[:, :k][valid[:, :k]]
        seen = np.zeros(num_items + 1, dtype=bool)
        seen[recommended] = True
        metrics[f"coverage@{k}"] = float(seen[1:].mean())
        metrics[f"invalid_rate@{k}"] = float(1.0 - valid[:, :k].mean())
    metrics["num_users"] = int(len(targets))
    return metrics


def _check(ranked: np.ndarray, targets: np.ndarray, num_items: int, ks: Sequence[int]) -> None:
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {tuple(ks)}")
    if ranked.ndim != 2 or targets.ndim != 1 or len(ranked) != len(targets):
        raise ValueError(f"expected ranked [users, K] and targets [users], got {ranked.shape} and {targets.shape}")
    if not len(targets):
        raise ValueError("no users to evaluate")
    if ranked.shape[1] < max(ks):
        raise ValueError(f"recommendation lists hold {ranked.shape[1]} items but metrics need K up to {max(ks)}")
    if not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked item ids must be integers, got dtype {ranked.dtype}")
    bad = (ranked != INVALID_ITEM) & ((ranked < 1) | (ranked > num_items))
    if bad.any():
        user, slot = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"user {user}, rank {slot}: item id {int(ranked[user, slot])} is neither -1 (invalid) "
                         f"nor in the catalogue 1..{num_items}")
    if targets.min() < 1 or targets.max() > num_items:
        raise ValueError(f"targets must be item ids in 1..{num_items}")
