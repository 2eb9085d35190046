"""The common evaluator: every recommender, SID-based or LLM-based, is scored here the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from jaxrec.data.splits import LeaveOneOut, Stage
from jaxrec.eval.metrics import DEFAULT_KS, ranking_metrics


class Recommender(Protocol):
    """Anything that ranks the full catalogue for a batch of users.

    `histories` is [B, L] int32, left-padded with 0, most recent item last; the result is [B, k] item ids in rank
    order, -1 where fewer than k valid items could be produced.
    """

    name: str

    def recommend(self, histories: np.ndarray, k: int) -> np.ndarray: ...


def group_metrics(ranked: np.ndarray, targets: np.ndarray, groups: np.ndarray, name: str,
                  ks: Sequence[int]) -> dict[str, float]:
    """Recall@K / NDCG@K where recommending any item of the target's group is a hit (`groups`: [num_items + 1]
    group id of each item id, e.g. items sharing one title), as `<name>_recall@K`, `<name>_ndcg@K`."""
    groups = np.asarray(groups)
    mapped = np.where(ranked > 0, groups[np.maximum(ranked, 0)], -1)
    metrics = ranking_metrics(mapped, groups[targets], int(groups.max()), ks)
    return {f"{name}_{key}": value for key, value in metrics.items() if key.startswith(("recall@", "ndcg@"))}


def evaluate(recommender: Recommender, split: LeaveOneOut, stage: Stage, *, max_history: int = 50,
             ks: Sequence[int] = DEFAULT_KS, batch_size: int | None = None, users: np.ndarray | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Rank the whole catalogue for each split user (or the subset `users`) and compute the metrics.

    A recommender with an `item_groups` array ([num_items + 1] group id per item id; several items behind one
    output, as items sharing a title in LLM-as-RS) also gets `<item_group_name>_recall@K` / `_ndcg@K`: a hit when
    the target is any item of a recommended group.

    By default every user goes to `recommend` in one call and the recommender batches as it needs (a trained model
    groups users by history length); `batch_size` splits the calls for recommenders that cannot.
    """
    histories = split.histories(stage, max_history)
    targets = split.targets(stage)
    if users is not None:
        histories, targets = histories[users], targets[users]
    if not len(targets):
        raise ValueError(f"no users to evaluate for {stage}")
    k = max(ks)
    batch_size = batch_size or len(targets)
    batches = range(0, len(targets), batch_size)
    ranked = [np.asarray(recommender.recommend(histories[i:i + batch_size], k))
              for i in tqdm(batches, desc=f"{recommender.name} {stage}", disable=not progress, unit="batch")]
    ranked = np.concatenate(ranked)
    metrics = ranking_metrics(ranked, targets, split.dataset.num_items, ks)
    groups = getattr(recommender, "item_groups", None)  # several items behind one output (LLM-as-RS: a title)
    if groups is not None:
        metrics.update(group_metrics(ranked, targets, groups, getattr(recommender, "item_group_name", "group"), ks))
    return metrics
