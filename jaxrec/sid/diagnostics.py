"""How good is a set of Semantic IDs? Code usage, collisions, reconstruction and semantic coherence, all vectorised."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxrec.data.types import Catalog
from jaxrec.sid.collisions import collision_groups
from jaxrec.sid.quantizers import Quantization


def level_usage(codes: np.ndarray, codebook_size: int) -> list[dict[str, float]]:
    """Per level: share of the codebook used, codes used, and perplexity exp(H) of the code distribution."""
    levels = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        levels.append({"usage": float((counts > 0).mean()), "codes_used": int((counts > 0).sum()),
                       "perplexity": float(np.exp(-(p * np.log(p)).sum())),
                       "largest_code_share": float(counts.max() / counts.sum())})
    return levels


def leaf_categories(catalog: Catalog) -> np.ndarray | None:
    """[N] leaf-category index per item (last element of its first category path), -1 when it has none."""
    if catalog.categories is None:
        return None
    leaves = [paths[0][-1] if paths and paths[0] else None for paths in catalog.categories]
    names = sorted({leaf for leaf in leaves if leaf is not None})
    index = {name: i for i, name in enumerate(names)}
    return np.array([-1 if leaf is None else index[leaf] for leaf in leaves], dtype=np.int64)


def _pairs(counts: np.ndarray) -> int:
    return int((counts.astype(np.int64) * (counts - 1) // 2).sum())


def semantic_coherence(codes: np.ndarray, categories: np.ndarray) -> list[dict[str, float]]:
    """For k = 1..levels: of the item pairs sharing their first k codes, the share that share a leaf category.

    `random_pair_baseline` is the same share over all item pairs, so `lift` > 1 means the codes group items of a
    category together more than chance. Items without a category are left out.
    """
    known = categories >= 0
    codes, categories = codes[known], categories[known]
    baseline_pairs = _pairs(np.bincount(categories))
    all_pairs = _pairs(np.array([len(categories)]))
    baseline = baseline_pairs / max(all_pairs, 1)
    result = []
    for k in range(1, codes.shape[1] + 1):
        prefix_group, prefix_counts = collision_groups(codes[:, :k])
        _, joint_counts = np.unique(np.stack([prefix_group, categories], axis=1), axis=0, return_counts=True)
        sharing = _pairs(prefix_counts)
        same = _pairs(joint_counts)
        share = same / sharing if sharing else None  # None: no two items share this prefix
        result.append({"prefix_length": k, "pairs_sharing_prefix": sharing, "same_leaf_category": share,
                       "random_pair_baseline": baseline,
                       "lift": share / baseline if share is not None and baseline else None})
    return result


def sid_diagnostics(quantization: Quantization, final_codes: np.ndarray, codebook_size: int,
                    catalog: Catalog | None = None) -> dict[str, Any]:
    """Everything `sid_diagnostics.json` reports about a quantization and its final (digit-extended) SIDs."""
    codes = quantization.codes
    _, group_sizes = collision_groups(codes)
    items = codes.shape[0]
    item_group_size = np.repeat(group_sizes, group_sizes)  # one entry per item
    report: dict[str, Any] = {
        "items": items,
        "levels": level_usage(codes, codebook_size),
        "unique_before_digit": float((item_group_size == 1).mean()),
        "distinct_sids_before_digit": int(len(group_sizes)),
        "largest_collision_group": int(group_sizes.max()),
        "items_in_collisions": int((item_group_size > 1).sum()),
        "collision_group_sizes": {str(size): int(count) for size, count in
                                  zip(*np.unique(group_sizes, return_counts=True))},
        "final_sids_unique": bool(len(np.unique(final_codes, axis=0)) == items),
        "level_reconstruction_error": quantization.level_errors,
        "quantizer": dict(quantization.info),
    }
    categories = leaf_categories(catalog) if catalog is not None else None
    if categories is not None and (categories >= 0).sum() > 1:
        report["semantic_coherence"] = semantic_coherence(codes, categories)
        report["items_without_category"] = int((categories < 0).sum())
    return report
