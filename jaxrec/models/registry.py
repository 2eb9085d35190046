"""Model families by name. A family builds a fitted `Recommender` from its config and the split.

Each later family (SASRec, TIGER, LLM-as-RS) registers here with the same signature, so the run pipeline and the
evaluator never special-case a model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxrec.data.splits import LeaveOneOut
from jaxrec.eval.evaluator import Recommender

Builder = Callable[[ml_collections.ConfigDict, LeaveOneOut, Path], Recommender]


def _popularity(config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path) -> Recommender:
    from jaxrec.models.popularity import Popularity

    return Popularity.fit(split, exclude_history=config.get("exclude_history", False))


FAMILIES: dict[str, Builder] = {"popularity": _popularity}


def build(family: str, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path) -> Recommender:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family](config, split, workdir)
