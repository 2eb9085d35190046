"""The collision digit: items whose codes coincide get 0, 1, 2, ... (in item-id order) as one extra code."""

from __future__ import annotations

import numpy as np


def collision_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group index [N], group sizes [G]) of the rows of `codes` [N, L]: rows with identical codes share a group."""
    _, inverse, counts = np.unique(np.asarray(codes), axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def collision_digits(codes: np.ndarray) -> np.ndarray:
    """[N, L] -> [N]: each row's rank among the rows sharing its codes, by row order (sort + run-length)."""
    codes = np.asarray(codes)
    n = codes.shape[0]
    rows = np.arange(n)
    # Stable sort by the codes (first column most significant); ties keep row order.
    order = np.lexsort((rows, *codes.T[::-1]))
    sorted_codes = codes[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = np.any(sorted_codes[1:] != sorted_codes[:-1], axis=1)
    run_start = np.maximum.accumulate(np.where(starts, rows, 0))
    digits = np.empty(n, dtype=np.int32)
    digits[order] = rows - run_start
    return digits


def with_collision_digit(codes: np.ndarray) -> np.ndarray:
    """[N, L] codes -> [N, L + 1] codes whose rows are all distinct."""
    return np.concatenate([np.asarray(codes, np.int32), collision_digits(codes)[:, None]], axis=1)
