"""Leave-one-out split, training-example expansion and the cold-start view.

Protocol (S3-Rec / P5 / TIGER): per user, the last item is the test target, the second-to-last the validation
target, and everything before is the training part. Validation histories are the training part; test histories are
the training part plus the validation target. Histories are left-padded int32 matrices, most recent item in the
last column, 0 = padding — the layout every `Recommender.recommend` receives.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import numpy as np

from jaxrec.data.types import PAD_ITEM, DataError, Dataset

logger = logging.getLogger(__name__)

Stage = Literal["validation", "test"]
# Leave-one-out: a user's last item is the test target, the one before it the validation target.
STAGE_TARGET_FROM_END = {"validation": 2, "test": 1}
MIN_SPLIT_LENGTH = 3  # one training item + validation target + test target


def check_stage(stage: str) -> str:
    """`stage` if it is a split stage; a clear error otherwise (a typo must not silently score another split)."""
    if stage not in STAGE_TARGET_FROM_END:
        raise ValueError(f"unknown stage {stage!r}: expected one of {', '.join(map(repr, STAGE_TARGET_FROM_END))}")
    return stage


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
    """A leave-one-out view of a dataset. `users` are the dataset rows kept (those long enough to split).

    `training_users` (None: all) restricts the *training* views (`train_sequences`, `train_items`,
    `training_examples`) to some of the users, for data-scaling studies (`with_train_fraction`); histories and
    targets, and so evaluation, still cover every user."""

    dataset: Dataset
    users: np.ndarray  # [U] int64 dataset row of each split user
    starts: np.ndarray  # [U] int64 offset of the user's first item in dataset.items
    ends: np.ndarray  # [U] int64 offset one past the user's last item
    report: dict
    training_users: np.ndarray | None = None  # sorted indices (into the split's users) whose training parts are used

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def train_ends(self) -> np.ndarray:
        return self.ends - 2

    def targets(self, stage: Stage) -> np.ndarray:
        """[U] int32 target item of each user for `stage`."""
        return self.dataset.items[self._target_offsets(stage)]

    def histories(self, stage: Stage, max_length: int) -> np.ndarray:
        """[U, max_length] left-padded histories for `stage` (most recent `max_length` items)."""
        return _windows(self.dataset.items, self.starts, self._target_offsets(stage), max_length)

    def _target_offsets(self, stage: Stage) -> np.ndarray:
        """Offsets of each user's `stage` target (its history ends there): the second-to-last or the last item."""
        return self.ends - STAGE_TARGET_FROM_END[check_stage(stage)]

    def _training_rows(self) -> np.ndarray:
        """Indices of the users whose training parts are training data (all, or `training_users`)."""
        return np.arange(self.num_users) if self.training_users is None else self.training_users

    def train_sequences(self, max_length: int) -> np.ndarray:
        """[T, max_length] left-padded training parts (most recent `max_length` training items per training user;
        T = U unless `training_users` is set)."""
        rows = self._training_rows()
        return _windows(self.dataset.items, self.starts[rows], self.train_ends[rows], max_length)

    def train_items(self) -> np.ndarray:
        """All training-part interactions (item ids) of the training users, concatenated over users."""
        rows = self._training_rows()
        mask = np.zeros(len(self.dataset.items) + 1, dtype=np.int64)
        np.add.at(mask, self.starts[rows], 1)
        np.add.at(mask, self.train_ends[rows], -1)
        return self.dataset.items[np.cumsum(mask[:-1]) > 0]

    def training_examples(self, max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """TIGER/GRID expansion: every prefix of a user's training part predicts its next item.

        Returns (histories [E, max_length] left-padded, targets [E], user index [E]); a training part of n items
        gives n - 1 examples. Only the training users' parts are expanded (all users unless `training_users`).
        """
        rows = self._training_rows()
        starts, train_ends = self.starts[rows], self.train_ends[rows]
        counts = np.maximum(train_ends - starts - 1, 0)
        user_index = np.repeat(rows, counts)
        first = np.repeat(starts + 1, counts)
        within = np.arange(len(user_index)) - np.repeat(np.cumsum(counts) - counts, counts)
        target_pos = first + within
        histories = _windows(self.dataset.items, np.repeat(starts, counts), target_pos, max_length)
        return histories, self.dataset.items[target_pos], user_index

    def with_train_fraction(self, fraction: float, seed: int = 0) -> LeaveOneOut:
        """This split with the training data of round(fraction x U) users (at least one), chosen by a seeded
        permutation of the users: the subsets are nested (a smaller fraction's users are among a larger one's) and
        the same for every model and training seed, so a data-scaling sweep varies the data alone. Evaluation
        still covers every user; `report` records the counts."""
        if not 0.0 < fraction <= 1.0:
            raise DataError(f"data.train_fraction must be in (0, 1], got {fraction}")
        if fraction == 1.0:
            return self
        keep = max(1, round(fraction * self.num_users))
        order = np.random.default_rng(seed).permutation(self.num_users)
        users = np.sort(order[:keep])
        report = {**self.report, "train_fraction": fraction, "training_users": int(keep),
                  "training_interactions": int((self.train_ends[users] - self.starts[users]).sum())}
        return dataclasses.replace(self, training_users=users, report=report)

    def cold_start_users(self, stage: Stage = "test") -> np.ndarray:
        """Indices (into the split's users) whose `stage` target never occurs in the training data (the training
        users' training parts)."""
        seen = np.zeros(self.dataset.num_items + 1, dtype=bool)
        seen[self.train_items()] = True
        return np.flatnonzero(~seen[self.targets(stage)])


def configured_split(dataset: Dataset, data: Any) -> LeaveOneOut:
    """The split a config's `data` group asks for (`on_short`, `train_fraction`), as `jaxrec run` and `jaxrec
    predict` build it."""
    split = leave_one_out(dataset, on_short=data.get("on_short", "drop"))
    return split.with_train_fraction(float(data.get("train_fraction", 1.0)))


def leave_one_out(dataset: Dataset, on_short: Literal["drop", "error"] = "drop") -> LeaveOneOut:
    """Split `dataset`; users with fewer than 3 items are dropped and counted (or rejected with on_short='error')."""
    lengths = dataset.lengths()
    short = np.flatnonzero(lengths < MIN_SPLIT_LENGTH)
    if len(short) and on_short == "error":
        user = int(short[0])
        raise DataError(f"dataset {dataset.name!r}: user {dataset.user_ids[user]!r} (row {user}) has "
                        f"{int(lengths[user])} items; leave-one-out needs at least {MIN_SPLIT_LENGTH} "
                        f"({len(short)} such users in total)")
    if len(short):
        logger.warning("leave-one-out: dropped %d of %d users with fewer than %d items",
                       len(short), dataset.num_users, MIN_SPLIT_LENGTH)
    users = np.flatnonzero(lengths >= MIN_SPLIT_LENGTH)
    if not len(users):
        raise DataError(f"dataset {dataset.name!r}: no user has the {MIN_SPLIT_LENGTH} items leave-one-out needs")
    report = {"users": len(users), "users_dropped_too_short": len(short),
              "interactions_dropped_too_short": int(lengths[short].sum())}
    return LeaveOneOut(dataset, users, dataset.offsets[users], dataset.offsets[users + 1], report)


def _windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_length: int) -> np.ndarray:
    """Left-padded [N, max_length] matrix of items[max(start, end - max_length):end] per row."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    positions = ends[:, None] - max_length + np.arange(max_length)[None, :]
    valid = positions >= starts[:, None]
    gathered = items[np.where(valid, positions, 0)]
    return np.where(valid, gathered, PAD_ITEM).astype(np.int32)
