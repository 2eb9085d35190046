"""Most-popular baseline: ranks items by their training-interaction count (ties broken by item id)."""

from __future__ import annotations

import numpy as np

from jaxrec.data.splits import LeaveOneOut
from jaxrec.data.types import INVALID_ITEM


class Popularity:
    """`recommend` returns the globally most popular items; with `exclude_history`, items in the user's
    history are skipped (the paper's protocol keeps them, since Amazon users do re-buy)."""

    name = "popularity"

    def __init__(self, counts: np.ndarray, exclude_history: bool = False):
        self.counts = np.asarray(counts)
        self.exclude_history = exclude_history
        order = np.lexsort((np.arange(len(counts)), -self.counts))  # descending count, then id
        self.order = order[order != 0].astype(np.int32)  # never recommend padding

    @classmethod
    def fit(cls, split: LeaveOneOut, exclude_history: bool = False) -> Popularity:
        counts = np.bincount(split.train_items(), minlength=split.dataset.num_items + 1)
        return cls(counts, exclude_history)

    def recommend(self, histories: np.ndarray, k: int) -> np.ndarray:
        """[B, k] most popular items; -1 fills the slots a small catalogue cannot."""
        histories = np.asarray(histories)
        # A history blocks at most L candidates, so the first k + L hold k unblocked ones when the catalogue can.
        candidates = self.order[: k + (histories.shape[1] if self.exclude_history else 0)]
        ranked = np.broadcast_to(candidates, (len(histories), len(candidates)))
        if self.exclude_history:
            blocked = (candidates[None, :, None] == histories[:, None, :]).any(axis=2)
            unblocked_first = np.argsort(blocked, axis=1, kind="stable")
            ranked = np.where(np.take_along_axis(blocked, unblocked_first, axis=1), INVALID_ITEM,
                              candidates[unblocked_first])
        result = np.full((len(histories), k), INVALID_ITEM, dtype=np.int32)
        width = min(k, ranked.shape[1])
        result[:, :width] = ranked[:, :width]
        return result
