"""Model families by name. A family builds a fitted `Recommender` from its config and the split.

Each later family (SASRec, TIGER, LLM-as-RS) registers here with the same signature, so the run pipeline and the
evaluator never special-case a model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxrec.data.splits import LeaveOneOut
from jaxrec.eval.evaluator import Recommender

Builder = Callable[[ml_collections.ConfigDict, LeaveOneOut, Path], Recommender]


def _popularity(config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path) -> Recommender:
    from jaxrec.models.popularity import Popularity

    return Popularity.fit(split, exclude_history=config.get("exclude_history", False))


def _sasrec(config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path) -> Recommender:
    from jaxrec.models import sasrec
    from jaxrec.train.trainer import Trainer

    model_config = sasrec.SASRecConfig(num_items=split.dataset.num_items, **config.model.to_dict())
    trainer = Trainer(sasrec.family(model_config), config.train, workdir)
    result = trainer.fit(split)
    (workdir / "fit.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return trainer.recommender(trainer.best_params)


FAMILIES: dict[str, Builder] = {"popularity": _popularity, "sasrec": _sasrec}


def build(family: str, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path) -> Recommender:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family](config, split, workdir)
