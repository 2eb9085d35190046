"""The results table of a sweep: one row per (point, model), rebuilt from the point directories.

`<workdir>/results.jsonl` holds one JSON object per row and `<workdir>/results.csv` the same rows flattened with
dotted column names (`parameters.components.recommender`, `metrics.test/recall@10`, `config.models.tiger.model.
d_model`, ...). Row keys (the contract with the scaling-law fits and `jaxrec report`):

    sweep, point, overrides {dotted key: value}, seed, data_fraction, model, family,
    status ("finished" | "failed" | "pending" | "running": another process holds the point's run lock),
    parameters {trainable, frozen, total, components {...}}, metrics {"<stage>/<metric>": value},
    seconds {fit, validation, test, total, wall}, device, workdir (relative to the sweep workdir), config

`seconds.wall` is the launcher's wall time of the point summed over its attempts (an interrupted and resumed point
counts both); the other seconds are the final process's, from metrics.json.

`components` is what the scaling-law forms need: SID models {recommender, text_encoder, quantizer}, LLM-as-RS
{lora, llm}, SASRec {recommender}, popularity {}. Rows of unfinished points carry the resolved config with empty
metrics and parameters of None.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxrec.run_lock import holder
from jaxrec.sweep.spec import experiment_hash

MANIFEST = "sweep.json"  # written by the launcher: the sweep's points, their overrides and resolved configs
POINT_STATE = "sweep_point.json"  # written by the launcher in each point directory: last attempt's status
RESULTS_JSONL, RESULTS_CSV = "results.jsonl", "results.csv"
NOT_METRICS = ("seconds", "parameters", "device")  # entries of a metrics.json model that are not stages
ROW_KEYS = ("sweep", "point", "overrides", "seed", "data_fraction", "model", "family", "status", "parameters",
            "metrics", "seconds", "device", "workdir", "config")


def point_status(directory: Path, expected_hash: str) -> str:
    """"finished" (metrics.json of this very config), "stale" (the directory holds a run of another config),
    "running" (another process holds its run lock), "failed" (the launcher's last attempt failed) or "pending"."""
    config_file = directory / "config.json"
    if config_file.exists():
        stored = json.loads(config_file.read_text())
        if experiment_hash(stored.get("config", {})) != expected_hash:
            return "stale"
        if (directory / "metrics.json").exists():
            return "finished"
    if holder(directory) is not None:
        return "running"
    state = read_point_state(directory)
    return "failed" if state.get("status") == "failed" else "pending"


def read_point_state(directory: Path) -> dict[str, Any]:
    path = directory / POINT_STATE
    return json.loads(path.read_text()) if path.exists() else {}


def collect_results(workdir: str | Path) -> list[dict[str, Any]]:
    """Every (point, model) row of the sweep in `workdir` (its points from the launcher's sweep.json; without one,
    every subdirectory holding a config.json), in point order."""
    workdir = Path(workdir)
    manifest_file = workdir / MANIFEST
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
        name, points = manifest["sweep"], manifest["points"]
    else:
        name, points = workdir.name, []
        for config_file in sorted(workdir.glob("*/config.json")):
            config = json.loads(config_file.read_text())["config"]
            points.append({"id": config_file.parent.name, "overrides": {}, "config": config,
                           "hash": experiment_hash(config)})
    rows = []
    for point in points:
        rows.extend(point_rows(workdir, name, point))
    return rows


def point_rows(workdir: Path, sweep: str, point: Mapping[str, Any]) -> list[dict[str, Any]]:
    directory = workdir / point["id"]
    config = point["config"]
    status = point_status(directory, point["hash"])
    metrics_file = directory / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if status == "finished" and metrics_file.exists() else {}
    state = read_point_state(directory)
    models = config.get("models", {})
    trained_seeds = [entry["train"]["seed"] for entry in models.values() if "seed" in entry.get("train", {})]
    rows = []
    for model, entry in models.items():
        result = metrics.get(model, {})
        seconds = dict(result.get("seconds", {}))
        wall = state.get("seconds_total", state.get("seconds"))
        if wall is not None and status in ("finished", "failed"):
            seconds["wall"] = wall  # the whole point (data, SID stage, every model) over its attempts, by the launcher
        rows.append({
            "sweep": sweep,
            "point": point["id"],
            "overrides": dict(point.get("overrides", {})),
            "seed": int(entry.get("train", {}).get("seed", trained_seeds[0] if trained_seeds else 0)),
            "data_fraction": float(config.get("data", {}).get("train_fraction", 1.0)),
            "model": model,
            "family": entry.get("family", ""),
            "status": "pending" if status == "stale" else status,
            "parameters": result.get("parameters") or {"trainable": None, "frozen": None, "total": None,
                                                       "components": {}},
            "metrics": flatten_metrics(result),
            "seconds": seconds,
            "device": result.get("device", ""),
            "workdir": point["id"],
            "config": config,
        })
    return rows


def flatten_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """{"validation": {"recall@10": x}, ...} -> {"validation/recall@10": x, ...} (seconds, parameters left out)."""
    return {f"{stage}/{name}": value for stage, values in result.items()
            if stage not in NOT_METRICS and isinstance(values, Mapping) for name, value in values.items()}


def write_results(workdir: str | Path, rows: Sequence[Mapping[str, Any]]) -> tuple[Path, Path]:
    """Write results.jsonl and results.csv into `workdir` (replacing earlier ones)."""
    workdir = Path(workdir)
    jsonl, table = workdir / RESULTS_JSONL, workdir / RESULTS_CSV
    jsonl.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    flat = [flatten_row(row) for row in rows]
    head = [key for key in ROW_KEYS if key not in ("overrides", "parameters", "metrics", "seconds", "config")]
    columns = list(head)
    for prefix in ("parameters.", "metrics.", "seconds.", "overrides.", "config."):
        columns += sorted({key for row in flat for key in row if key.startswith(prefix)})
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(flat)
    return jsonl, table


def flatten_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts -> dotted keys (`overrides` keys are dotted already and kept whole after the prefix); lists as
    JSON; None as ''."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list | tuple):
            flat[prefix] = json.dumps(value, default=str)
        else:
            flat[prefix] = "" if value is None else value

    for key, value in row.items():
        visit(key, value)
    return flat
