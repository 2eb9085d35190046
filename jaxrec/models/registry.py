"""Model families by name. A family builds a fitted `Recommender` from its config and the split.

Each later family (SASRec, TIGER, LLM-as-RS) registers here with the same signature, so the run pipeline and the
evaluator never special-case a model. `artifacts` carries what earlier stages of the run built (`sid_table`: the
`SIDTable` of the SID stage), passed explicitly instead of being looked up on disk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections

from jaxrec.data.splits import LeaveOneOut
from jaxrec.eval.evaluator import Recommender

if TYPE_CHECKING:
    from jaxrec.train.trainer import ModelFamily

Builder = Callable[[ml_collections.ConfigDict, LeaveOneOut, Path, Mapping[str, Any]], Recommender]


def _popularity(config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
                artifacts: Mapping[str, Any]) -> Recommender:
    from jaxrec.models.popularity import Popularity

    return Popularity.fit(split, exclude_history=config.get("exclude_history", False))


def _fit(family: ModelFamily, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path) -> Recommender:
    """Train a `ModelFamily` with the shared trainer; fit.json records the run; the best checkpoint recommends."""
    from jaxrec.train.trainer import Trainer

    trainer = Trainer(family, config.train, workdir)
    result = trainer.fit(split)
    (workdir / "fit.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return trainer.recommender(trainer.best_params)


def _sasrec(config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
            artifacts: Mapping[str, Any]) -> Recommender:
    from jaxrec.models import sasrec

    model_config = sasrec.SASRecConfig(num_items=split.dataset.num_items, **config.model.to_dict())
    return _fit(sasrec.family(model_config), config, split, workdir)


def _tiger(config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
           artifacts: Mapping[str, Any]) -> Recommender:
    from jaxrec.models import tiger

    table = artifacts.get("sid_table")
    if table is None:
        raise ValueError("model family 'tiger' needs the run's SID table: add a `sid` group to the config "
                         "(jaxrec run builds it under <workdir>/sid), e.g. configs/tiger_synthetic.py")
    model_config = tiger.TIGERConfig(level_sizes=table.level_sizes, **config.model.to_dict())
    return _fit(tiger.family(model_config, table, split), config, split, workdir)


FAMILIES: dict[str, Builder] = {"popularity": _popularity, "sasrec": _sasrec, "tiger": _tiger}


def build(family: str, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
          artifacts: Mapping[str, Any] | None = None) -> Recommender:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family](config, split, workdir, artifacts or {})
