"""Model families by name: `build` fits a `Recommender` from its config and the split, `load` restores a finished
run's best checkpoint (for `jaxrec predict`).

Each trained family (SASRec, TIGER, later LLM-as-RS) registers a `ModelFamily` factory here, so the run pipeline and
the evaluator never special-case a model. `artifacts` carries what earlier stages of the run built (`sid_table`: the
`SIDTable` of the SID stage; `item_embeddings`: {model name: [num_items + 1, D]} of the models trained so far that
have item embeddings), passed explicitly instead of being looked up on disk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections
from flax import nnx

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
    return llm_rs.family(model_config, split, workdir, artifacts.get("item_embeddings"))


# Families trained by the shared trainer; popularity is counted, not trained.
TRAINED: dict[str, FamilyFactory] = {"sasrec": _sasrec, "tiger": _tiger, "llm": _llm}
FAMILIES = ("popularity", *TRAINED)


def _sid_components(config: ml_collections.ConfigDict, trainable: int, frozen: int,
                    artifacts: Mapping[str, Any]) -> dict[str, int | None]:
    sid = artifacts.get("sid_parameters") or {}  # None when a prebuilt table came without its diagnostics
    return {"recommender": trainable, "text_encoder": sid.get("text_encoder"), "quantizer": sid.get("quantizer")}


def _llm_components(config: ml_collections.ConfigDict, trainable: int, frozen: int,
                    artifacts: Mapping[str, Any]) -> dict[str, int | None]:
    """(`trainable` excludes the CF projection, which `parameter_counts` reports as its own component.)"""
    if config.model.mode == "lora":
        return {"lora": trainable, "llm": frozen}
    return {"lora": 0, "llm": trainable + frozen}


# What each family's parameters are made of, in the terms the scaling-law fits use: N_RS (recommender), N_LLM (the
# SID stage's frozen text encoder, or the LLM-as-RS base model), N_QT (the quantizer), the LoRA adapters.
COMPONENTS: dict[str, Callable[..., dict[str, int | None]]] = {
    "sasrec": lambda config, trainable, frozen, artifacts: {"recommender": trainable},
    "tiger": _sid_components,
    "llm": _llm_components,
}


def cf_source(entry: ml_collections.ConfigDict) -> str:
    """The model of the run whose item embeddings the `config.models` entry reads (LLM-as-RS `model.cf_source`:
    collaborative-filtering injection), or "" when it reads none."""
    return (entry.get("model") or {}).get("cf_source", "") or ""


def parameter_counts(family: str, config: ml_collections.ConfigDict, trainable: nnx.State | None = None,
                     frozen: nnx.State | None = None, artifacts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{"trainable", "frozen", "total", "components"} element counts of a model's parameters (popularity: zeros);
    `components` names the parts the scaling-law forms need (`COMPONENTS`)."""
    if family == "popularity":
        return {"trainable": 0, "frozen": 0, "total": 0, "components": {}}
    from jaxrec.models.llm_rs import CFParam

    def size(state: nnx.State | None, kind: type[nnx.Param] = nnx.Param) -> int:  # `Constant` tables are no weights
        if state is None:
            return 0
        return int(sum(v.get_value().size for _, v in nnx.to_flat_state(state) if isinstance(v, kind)))
    counts = {"trainable": size(trainable), "frozen": size(frozen)}
    counts["total"] = counts["trainable"] + counts["frozen"]
    projection = size(trainable, CFParam)  # LLM-as-RS CF injection: its own component, not LoRA's nor the LLM's
    counts["components"] = COMPONENTS[family](config, counts["trainable"] - projection, counts["frozen"],
                                              artifacts or {})
    if projection:
        counts["components"]["cf_projection"] = projection
    return counts


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")


def build(family: str, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
          artifacts: Mapping[str, Any] | None = None) -> tuple[Recommender, dict[str, Any]]:
    """Fit `family` (training resumes from `workdir`'s checkpoints); returns its best checkpoint's recommender and
    its `parameter_counts`. fit.json records a trained run (steps, best step, validation curve, seconds)."""
    _check(family)
    if family == "popularity":
        from jaxrec.models.popularity import Popularity

        return (Popularity.fit(split, exclude_history=config.get("exclude_history", False)),
                parameter_counts(family, config))
    from jaxrec.train.trainer import Trainer

    trainer = Trainer(TRAINED[family](config, split, artifacts or {}, workdir), config.train, workdir)
    result = trainer.fit(split, final_evaluation=False)  # the caller evaluates the returned recommender
    (workdir / "fit.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    counts = parameter_counts(family, config, trainer.best_params, trainer.frozen, artifacts)
    return trainer.recommender(trainer.best_params), counts


def load(family: str, config: ml_collections.ConfigDict, split: LeaveOneOut, workdir: Path,
         artifacts: Mapping[str, Any] | None = None) -> Recommender:
    """The recommender of a finished run without training: the best checkpoint under `workdir` (popularity is
    recounted from the split, which is what fitting it means)."""
    _check(family)
    if family == "popularity":
        return build(family, config, split, workdir, artifacts)[0]
    from jaxrec.train.trainer import Trainer

    trainer = Trainer(TRAINED[family](config, split, artifacts or {}, workdir), config.train, workdir)
    return trainer.recommender(trainer.restore_best())
