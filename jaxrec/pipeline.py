"""`jaxrec run`: data -> leave-one-out split -> [SID stage] -> each configured model -> the common evaluator ->
metrics.json."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import ml_collections

from jaxrec.config import ConfigError, config_hash
from jaxrec.data.sources import load_configured
from jaxrec.data.splits import check_stage, configured_split
from jaxrec.eval.evaluator import evaluate
from jaxrec.models.registry import build, cf_source
from jaxrec.run_lock import hold_workdir

logger = logging.getLogger(__name__)


def device_description() -> str:
    """What the run computed on, e.g. "NVIDIA H100 80GB HBM3 x8" or "cpu x1" (x processes when several)."""
    import jax

    text = f"{jax.devices()[0].device_kind} x{jax.device_count()}"
    return text if jax.process_count() == 1 else f"{text} ({jax.process_count()} processes)"


def model_order(models: ml_collections.ConfigDict) -> list[str]:
    """The names of `models` in config order (ConfigDict's: sorted by name), except that a model reading another's
    item embeddings (`model.cf_source`, LLM-as-RS) runs after it. Raises before anything trains when the source is
    not a model of the config, or the sources form a cycle."""
    order: list[str] = []
    visiting: set[str] = set()

    def place(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"models.{name}.model.cf_source: the CF sources form a cycle through {name!r}")
        visiting.add(name)
        source = cf_source(models[name])
        if source:
            if source not in models:
                raise ValueError(f"models.{name}.model.cf_source: {source!r} is not a model of this config "
                                 f"(models: {sorted(models)})")
            place(source)
        order.append(name)

    for name in models:
        place(name)
    return order


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Run every model in `config.models`; write config.json, data_report.json and metrics.json to `workdir`.

    metrics.json: `{"<model>": {"validation": {...}, "test": {...}, ["test_cold_start": {...}], "seconds": {...},
    "parameters": {"trainable", "frozen", "total", "components"}, "device": "<kind> x<count>"}}`. Raises
    `run_lock.WorkdirBusy` when another process is running in `workdir`."""
    distributed = config.get("distributed")
    if distributed is not None and distributed.get("enabled", False):
        from jaxrec.train.mesh import initialize_distributed

        # Before any JAX computation. Empty fields let JAX detect them (TPU pods, SLURM, ...).
        process_id = distributed.get("process_id", -1)
        initialize_distributed(distributed.get("coordinator_address") or None, distributed.get("num_processes") or None,
                               None if process_id < 0 else process_id, force=True)
    order = model_order(config.models)  # config errors before any work
    stages = tuple(config.eval.get("stages", ("validation", "test")))
    for stage in stages:
        try:
            check_stage(stage)
        except ValueError as error:
            raise ConfigError(f"eval.stages: {error}") from None
    import jax

    workdir = Path(workdir)
    # One run per directory (run_lock); the processes of a multi-host run share it, process 0 holds the lock.
    with hold_workdir(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return _run_models(config, workdir, order, stages)


def _run_models(config: ml_collections.ConfigDict, workdir: Path, order: list[str],
                stages: tuple[str, ...]) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(
        {"config": config.to_dict(), "config_hash": config_hash(config)}, indent=2, default=str))
    started = time.perf_counter()
    data = config.data
    dataset = load_configured(data)
    split = configured_split(dataset, data)
    stats = dataset.stats()
    (workdir / "data_report.json").write_text(json.dumps(
        {"stats": stats, "split": split.report, "seconds": time.perf_counter() - started}, indent=2, default=str))
    logger.info(f"data: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions "
         f"({split.report['users_dropped_too_short']} users too short for the split)")

    artifacts: dict[str, Any] = {}  # what model families may need from earlier stages
    if "sid" in config:  # the SID stage: embeddings -> quantizer -> SID table (+ diagnostics) under <workdir>/sid
        from jaxrec.sid.build import build_sid

        artifacts["sid_table"], diagnostics = build_sid(config.sid, dataset.catalog, workdir / "sid")
        artifacts["sid_parameters"] = diagnostics.get("parameters")  # text encoder and quantizer sizes

    ev = config.eval
    device = device_description()
    metrics: dict[str, Any] = {}
    for name in order:
        model_config = config.models[name]
        started = time.perf_counter()
        recommender, parameters = build(model_config.family, model_config, split, workdir / name, artifacts)
        fit_seconds = time.perf_counter() - started
        embeddings = getattr(recommender, "item_embeddings", lambda: None)()
        if embeddings is not None:  # for later models (LLM-as-RS `cf_source`)
            artifacts.setdefault("item_embeddings", {})[name] = embeddings
        result: dict[str, Any] = {}
        seconds: dict[str, float] = {"fit": fit_seconds}
        # Test runs second: its shapes are already compiled. A config may list fewer stages (eval.stages) where a
        # full evaluation is costly and the in-training validation already chose the checkpoint.
        for stage in stages:
            stage_started = time.perf_counter()
            result[stage] = evaluate(recommender, split, stage, max_history=ev.max_history, ks=tuple(ev.ks))
            seconds[stage] = time.perf_counter() - stage_started
        if ev.get("cold_start", False):
            cold = split.cold_start_users("test")
            if len(cold):
                result["test_cold_start"] = evaluate(recommender, split, "test", max_history=ev.max_history,
                                                     ks=tuple(ev.ks), users=cold)
        result["seconds"] = {**seconds, "total": time.perf_counter() - started}
        result["parameters"] = parameters
        result["device"] = device
        metrics[name] = result
        logger.info(f"{name}: " + "  ".join(f"{stage} recall@10={result[stage].get('recall@10', float('nan')):.4f} "
                                           f"ndcg@10={result[stage].get('ndcg@10', float('nan')):.4f}"
                                           for stage in stages))
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    logger.info(f"wrote {workdir / 'metrics.json'}")
    return metrics
