"""Model families by name: `build` fits a `Recommender` from its config and the split, `load` restores a finished
run's best checkpoint (for `jaxrec predict`).

Each trained family (SASRec, TIGER, later LLM-as-RS) registers a `ModelFamily` factory here, so the run pipeline and
the evaluator never special-case a model. `artifacts` carries what earlier stages of the run built (`sid_table`: the
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

FamilyFactory = Callable[[ml_collections.ConfigDict, LeaveOneOut, Mapping[str, Any], Path], "ModelFamily"]


def _sasrec(config: ml_collections.ConfigDict, split: LeaveOneOut, artifacts: Mapping[str, Any],
            workdir: Path) -> ModelFamily:
    from jaxrec.models import sasrec

    model_config = sasrec.SASRecConfig(num_items=split.dataset.num_items, **config.model.to_dict())
    return sasrec.family(model_config)


def _tiger(config: ml_collections.ConfigDict, split: LeaveOneOut, artifacts: Mapping[str, Any],
           workdir: Path) -> ModelFamily:
    from jaxrec.models import tiger

    table = artifacts.get("sid_table")
    if table is None:
        raise ValueError("model family 'tiger' needs the run's SID table: add a `sid` group to the config "
                         "(jaxrec run builds it under <workdir>/sid), e.g. configs/tiger_synthetic.py")
    model_config = tiger.TIGERConfig(level_sizes=table.level_sizes, **config.model.to_dict())
    return tiger.family(model_config, table, split)


def _llm(config: ml_collections.ConfigDict, split: LeaveOneOut, artifacts: Mapping[str, Any],
         workdir: Path) -> ModelFamily:
    from jaxrec.models import llm_rs

    from jaxrec.config import dataclass_from_dict

    model_config = dataclass_from_dict(llm_rs.LLMRSConfig, config.model.to_dict(), "LLM-as-RS model")
    return llm_rs.family(model_config, split, workdir)


# Families trained by the shared trainer; popularity is counted, not trained.
TRAINED: dict[str, FamilyFactory] = {"sasrec": _sasrec, "tiger": _tiger, "llm": _llm}
FAMILIES = ("popularity", *TRAINED)


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")


def build(family: str, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
          artifacts: Mapping[str, Any] | None = None) -> Recommender:
    """Fit `family` (training resumes from `workdir`'s checkpoints) and return its best checkpoint's recommender;
    fit.json records a trained run (steps, best step, validation curve, seconds)."""
    _check(family)
    if family == "popularity":
        from jaxrec.models.popularity import Popularity

        return Popularity.fit(split, exclude_history=config.get("exclude_history", False))
    from jaxrec.train.trainer import Trainer

    trainer = Trainer(TRAINED[family](config, split, artifacts or {}, workdir), config.train, workdir)
    result = trainer.fit(split, final_evaluation=False)  # the caller evaluates the returned recommender
    (workdir / "fit.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return trainer.recommender(trainer.best_params)


def load(family: str, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
         artifacts: Mapping[str, Any] | None = None) -> Recommender:
    """The recommender of a finished run without training: the best checkpoint under `workdir` (popularity is
    recounted from the split, which is what fitting it means)."""
    _check(family)
    if family == "popularity":
        return build(family, config, split, workdir, artifacts)
    from jaxrec.train.trainer import Trainer

    trainer = Trainer(TRAINED[family](config, split, artifacts or {}, workdir), config.train, workdir)
    return trainer.recommender(trainer.restore_best())
