"""`jaxrec report`: a sweep's results table -> seed-aggregated tables, scaling-law fits, plots and `report.md`.

Reads `<workdir>/results.jsonl` (one JSON object per (point, model) row, written by `jaxrec sweep`): rows are grouped
by family and model, and within those by configuration (the point's overrides without any `*.seed` key, plus the
data fraction); seeds are aggregated (mean, std, min/max). Each family with a scaling-law form is fitted per model:
TIGER rows with `sid_gr` (x = recommender parameters), LLM rows with `llm_as_rs` (x = total parameters), SASRec with
`single` (B = 0). CF-injected LLM-as-RS configurations (experiments/cf_injection.py) are not fitted: a section sets
each beside the no-CF control with the same LLM settings. Writes into `<workdir>/report/` (or `out`): `report.md`,
`fit.json` and PNG plots.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxrec.scaling.laws import PAPER_TABLE1, ScalingLaw, preset

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
STATUSES = ("finished", "failed", "pending", "running")
FAMILY_FORMS = {"tiger": "sid_gr", "llm": "llm_as_rs", "sasrec": "single"}
FORM_DEFAULTS: dict[str, dict[str, float]] = {"single": {"B": 0.0}}  # two power laws in one variable: keep one
FAMILY_NAMES = {"tiger": "SID-GR (TIGER)", "llm": "LLM-as-RS", "sasrec": "SASRec", "popularity": "Popularity"}
FAMILY_ORDER = ("tiger", "llm", "sasrec", "popularity")
CF_COMPONENT = "cf_projection"  # parameter component of LLM-as-RS rows with CF injection (experiments/cf_injection)
CF_KEYS = ("models.sasrec.", "models.llm.model.cf_source")  # overrides that choose the CF source, not the LLM


class ResultsError(ValueError):
    """A results table that cannot be read; the message names the file and line."""


# ----------------------------------------------------------------------------------------------------------------
# Reading and grouping


def load_results(workdir: str | Path) -> list[dict[str, Any]]:
    """The rows of `<workdir>/results.jsonl` (checked: a malformed row raises `ResultsError` with file:line)."""
    path = Path(workdir) / RESULTS_FILE
    if not path.is_file():
        raise ResultsError(f"{path}: no results table (`jaxrec sweep` writes it)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ResultsError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
        _check_row(row, where)
        rows.append(row)
    if not rows:
        raise ResultsError(f"{path}: no rows")
    return rows


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise ResultsError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key, kind in (("point", str), ("model", str), ("family", str), ("status", str)):
        if not isinstance(row.get(key), kind):
            raise ResultsError(f"{where}: field {key!r} must be a {kind.__name__}, got {row.get(key)!r}")
    if row["status"] not in STATUSES:
        raise ResultsError(f"{where}: status {row['status']!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(row.get("overrides", {}), dict):
        raise ResultsError(f"{where}: field 'overrides' must be an object")
    if row.get("seed") is not None and not isinstance(row["seed"], int):
        raise ResultsError(f"{where}: field 'seed' must be an integer, got {row['seed']!r}")
    if row["status"] != "finished":
        return
    parameters, metrics = row.get("parameters"), row.get("metrics")
    if not isinstance(parameters, dict) or not isinstance(parameters.get("components", {}), dict):
        raise ResultsError(f"{where}: a finished row needs 'parameters' with a 'components' object")
    for key in ("trainable", "frozen", "total"):
        if key in parameters and not _is_number(parameters[key]):
            raise ResultsError(f"{where}: parameters.{key} must be a number, got {parameters[key]!r}")
    for name, count in parameters.get("components", {}).items():  # None: not known (a prebuilt SID table's sizes)
        if count is not None and not _is_number(count):
            raise ResultsError(f"{where}: parameters.components.{name} must be a number or null, got {count!r}")
    if not isinstance(metrics, dict) or not metrics:
        raise ResultsError(f"{where}: a finished row needs a non-empty 'metrics' object")
    for name, value in metrics.items():
        if not (_is_number(value) or value is None):
            raise ResultsError(f"{where}: metrics[{name!r}] must be a number, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass
class Group:
    """One configuration of one model: its finished seed replicates."""

    family: str
    model: str
    key: tuple
    overrides: dict[str, Any]
    data_fraction: float | None
    rows: list[dict[str, Any]]
    label: str = ""

    @property
    def parameters(self) -> dict[str, Any]:
        return self.rows[0].get("parameters", {})

    @property
    def components(self) -> dict[str, float]:
        return self.parameters.get("components", {})

    @property
    def x(self) -> float | None:
        """The plotted size: recommender (trainable) parameters, or total parameters for LLM-as-RS."""
        params = self.parameters
        if self.family == "llm":
            value = params.get("total")
        else:
            value = self.components.get("recommender", params.get("trainable"))
        return float(value) if value else None

    @property
    def cf_injected(self) -> bool:
        """An LLM-as-RS configuration with collaborative-filtering embeddings injected (a CF projection)."""
        return bool(self.components.get(CF_COMPONENT))

    def values(self, metric: str) -> np.ndarray:
        found = np.array([v for v in (row["metrics"].get(metric) for row in self.rows) if v is not None], dtype=float)
        return found[np.isfinite(found)]  # a NaN/inf metric counts as missing

    def seconds(self) -> float | None:
        totals = []
        for row in self.rows:
            seconds = row.get("seconds") or {}
            if _is_number(seconds.get("total")):
                totals.append(float(seconds["total"]))
            elif seconds:
                totals.append(float(sum(v for v in seconds.values() if _is_number(v))))
        return float(np.mean(totals)) if totals else None

    @property
    def devices(self) -> str:
        return ", ".join(sorted({str(row.get("device", "?")) for row in self.rows}))


def _is_seed_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


def group_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[Group], list[dict[str, Any]], list[str]]:
    """(groups of finished rows, rows not finished, notes). A configuration's replicates are its rows that differ
    in seeds only (the training seed and any `*.seed` override, e.g. the quantizer's); a (configuration, seeds) seen
    twice keeps its last row."""
    groups: dict[tuple, Group] = {}
    unfinished, notes = [], []
    seen: dict[tuple, int] = {}
    for row in rows:
        if row["status"] != "finished":
            unfinished.append(row)
            continue
        overrides = {k: v for k, v in row.get("overrides", {}).items() if not _is_seed_key(k)}
        config = json.dumps(overrides, sort_keys=True, default=str)
        key = (row["family"], row["model"], config, row.get("data_fraction"))
        group = groups.setdefault(key, Group(row["family"], row["model"], key, overrides, row.get("data_fraction"),
                                             []))
        seeds = {k: v for k, v in row.get("overrides", {}).items() if _is_seed_key(k)}
        seed_key = key + (json.dumps(seeds, sort_keys=True, default=str), row.get("seed"))
        if seed_key in seen:
            notes.append(f"{row['model']} point {row['point']!r} seeds {seeds or row.get('seed')}: listed twice; the "
                         f"later row is used")
            group.rows[seen[seed_key]] = row
            continue
        seen[seed_key] = len(group.rows)
        group.rows.append(row)
    ordered = sorted(groups.values(), key=lambda g: (_family_rank(g.family), g.model, g.x or 0.0, g.key[2]))
    _label(ordered)
    return ordered, unfinished, notes


def _family_rank(family: str) -> int:
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def _label(groups: list[Group]) -> None:
    """Labels from the overrides' last key components, full dotted keys where those would clash."""
    def text(group: Group, short: bool) -> str:
        parts = [f"{k.rsplit('.', 1)[-1] if short else k}={v}" for k, v in sorted(group.overrides.items())]
        if group.data_fraction not in (None, 1, 1.0):
            parts.append(f"data_fraction={group.data_fraction:g}")
        return ", ".join(parts) or "(defaults)"

    short = [text(g, True) for g in groups]
    clash = len({(g.family, g.model, s) for g, s in zip(groups, short)}) < len(groups)
    for group, label in zip(groups, short):
        group.label = text(group, False) if clash else label


# ----------------------------------------------------------------------------------------------------------------
# Fits


def partner_metric(metric: str) -> str | None:
    """recall@K <-> ndcg@K in the same stage."""
    if "recall@" in metric:
        return metric.replace("recall@", "ndcg@")
    if "ndcg@" in metric:
        return metric.replace("ndcg@", "recall@")
    return None


def detect_dataset(rows: Sequence[dict[str, Any]]) -> str | None:
    """The dataset name for the paper comparison, from the rows' `config.data` (only Beauty is recognised)."""
    for row in rows:
        data = (row.get("config") or {}).get("data")
        if data and "beauty" in json.dumps(data).lower():
            return "beauty"
    return None


def fit_groups(groups: Sequence[Group], law: ScalingLaw, metric: str, *, fixed: Mapping[str, float] | None = None,
               n_bootstrap: int = 200, seed: int = 0, huber_delta: float = 1e-3) -> dict[str, Any]:
    """Fit `law` to one model's configurations; a dict with `status` fitted / not_fitted and the reason or fit."""
    from jaxrec.scaling.fit import ScalingData, fit_scaling, plan_fit  # scipy: loaded only when reporting

    points = [g for g in groups if len(g.values(metric))]
    result: dict[str, Any] = {"form": law.name, "metric": metric, "status": "not_fitted", "reason": None,
                              "notes": [], "fit": None,
                              "points": [{"config": g.label, "x": g.x, "components": g.components,
                                          "mean": float(g.values(metric).mean()) if len(g.values(metric)) else None,
                                          "std": float(g.values(metric).std(ddof=1)) if len(g.values(metric)) > 1
                                          else None,
                                          "n_seeds": len(g.values(metric))} for g in groups]}
    missing = sorted({c for g in points for c in law.components if g.components.get(c) is None})
    if missing:
        result["reason"] = f"the rows have no parameter counts for {', '.join(missing)}"
        return result
    if not points:
        result["reason"] = f"no finished row has {metric}"
        return result
    data = ScalingData.build({c: [g.components[c] for g in points] for c in law.components},
                             [g.values(metric) for g in points], [g.label for g in points])
    requested = {**FORM_DEFAULTS.get(law.name, {}),
                 **{k: v for k, v in (fixed or {}).items() if k in law.parameter_names}}
    plan = plan_fit(law, data, requested, reduce=True)
    result["notes"] = list(plan.notes)
    result["fixed_by_caller"] = requested
    if not plan.feasible:
        result["reason"] = (f"{plan.distinct_points} distinct points cannot determine {len(plan.free)} free "
                            f"parameters ({', '.join(plan.free)}); a fit needs at least {plan.required_points}")
        return result
    order = [g.x or 0.0 for g in points]
    try:
        fit = fit_scaling(law, data, plan.fixed, huber_delta=huber_delta, n_bootstrap=n_bootstrap, seed=seed,
                          order=order)
    except ValueError as error:  # e.g. a zero-size N_SI at some point
        result["reason"] = str(error)
        return result
    result.update(status="fitted", fit=fit.to_dict())
    result["_fit"] = fit  # for the plots; dropped before writing fit.json
    return result


# ----------------------------------------------------------------------------------------------------------------
# The report


def write_report(workdir: str | Path, out: str | Path | None = None, *, metric: str = "test/recall@10",
                 n_bootstrap: int = 200, seed: int = 0, huber_delta: float = 1e-3,
                 fixed: Mapping[str, float] | None = None, dataset: str | None = None) -> Path:
    """Write `report.md`, `fit.json` and the plots for the sweep in `workdir`; returns the report's path."""
    from jaxrec.scaling import plots  # matplotlib: loaded only when reporting

    rows = load_results(workdir)
    out = Path(out) if out is not None else Path(workdir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    groups, unfinished, notes = group_rows(rows)
    dataset = (dataset or detect_dataset(rows) or "").lower() or None
    metrics = [metric] + [m for m in (partner_metric(metric),) if m]
    by_model: dict[tuple[str, str], list[Group]] = {}
    for group in groups:
        by_model.setdefault((group.family, group.model), []).append(group)
    fits = []
    for (family, model), model_groups in by_model.items():
        if family not in FAMILY_FORMS:
            continue
        law = preset(FAMILY_FORMS[family])
        # The paper's LLM-as-RS law has no CF-source term: CF-injected configurations are reported beside their
        # no-CF controls (`_cf_markdown`), not fitted with them.
        model_groups = [g for g in model_groups if not g.cf_injected]
        for name in metrics:
            result = fit_groups(model_groups, law, name, fixed=fixed, n_bootstrap=n_bootstrap, seed=seed,
                                huber_delta=huber_delta)
            paper = PAPER_TABLE1.get((dataset, law.name)) if name.endswith("recall@10") else None
            result.update(family=family, model=model, paper=paper)
            fits.append(result)
    images = plots.write_plots(out, groups, fits, metrics)
    text = _markdown(workdir, rows, groups, unfinished, notes, fits, metrics, images, dataset)
    (out / "report.md").write_text(text)
    record = {"workdir": str(workdir), "metric": metric, "dataset": dataset, "n_rows": len(rows),
              "fits": [{k: v for k, v in f.items() if not k.startswith("_")} for f in fits],
              "unfinished": [_unfinished_entry(r) for r in unfinished]}
    (out / "fit.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    log.info("report written to %s (%d plots)", out, len(images))
    return out / "report.md"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _unfinished_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("sweep", "point", "model", "family", "seed", "status", "workdir")}


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _count(value: Any) -> str:
    if not _is_number(value):
        return "–"
    value = float(value)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def _markdown(workdir, rows, groups, unfinished, notes, fits, metrics, images, dataset) -> str:
    sweeps = sorted({str(r.get("sweep")) for r in rows if r.get("sweep")})
    lines = ["# Scaling report", "",
             (f"Workdir `{workdir}`; sweep {', '.join(sweeps) or '–'}; {len(rows)} rows, "
              f"{len(rows) - len(unfinished)} finished, {len(unfinished)} not finished. "
              f"Dataset: {dataset or 'unknown'}. Metrics: mean ± std over seeds. Fits use {metrics[0]}"
              f"{' and ' + metrics[1] if len(metrics) > 1 else ''}."), ""]
    families = []
    for group in groups:
        if (group.family, group.model) not in families:
            families.append((group.family, group.model))
    for family, model in families:
        members = [g for g in groups if (g.family, g.model) == (family, model)]
        lines += [f"## {FAMILY_NAMES.get(family, family)}: model `{model}`", ""]
        size_header = "total params" if family == "llm" else "recommender params"
        lines.append(f"| config | {size_header} | trainable | total | " + " | ".join(metrics)
                     + " | seeds | wall time (s) | device |")
        lines.append("|---" * (7 + len(metrics)) + "|")
        for group in members:
            cells = []
            for name in metrics:
                values = group.values(name)
                std = values.std(ddof=1) if len(values) > 1 else 0.0
                cells.append(f"{values.mean():.4f} ± {std:.4f}" if len(values) else "–")
            params = group.parameters
            lines.append(f"| {group.label} | {_count(group.x)} | {_count(params.get('trainable'))} | "
                         f"{_count(params.get('total'))} | " + " | ".join(cells) +
                         f" | {len(group.rows)} | {_num(group.seconds(), 4)} | {group.devices} |")
        lines.append("")
        for fit in (f for f in fits if (f["family"], f["model"]) == (family, model)):
            lines += _fit_markdown(fit)
        for name in metrics:
            image = images.get((family, name))
            if image:
                lines += [f"![{family} {name}]({image})", ""]
    if "comparison" in images:
        lines += ["## SID-GR vs LLM-as-RS", "", f"![comparison]({images['comparison']})", ""]
    lines += _cold_start_markdown(groups)
    lines += _cf_markdown(groups, metrics[0])
    lines += ["## Not finished", ""]
    if unfinished:
        lines += ["| point | model | family | seed | status | workdir |", "|---|---|---|---|---|---|"]
        for row in unfinished:
            lines.append(f"| {row['point']} | {row['model']} | {row['family']} | {row.get('seed', '–')} | "
                         f"{row['status']} | {row.get('workdir', '–')} |")
    else:
        lines.append("Every point finished.")
    lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


COLD_START = ("test_cold_start/recall@10", "test_cold_start/ndcg@10")


def _cold_start_markdown(groups: Sequence[Group]) -> list[str]:
    """The cold-start probe: every configuration's metrics on the test users whose target no training sequence
    contains (`eval.cold_start`), next to its metrics on every test user."""
    measured = [g for g in groups if len(g.values(COLD_START[0]))]
    if not measured:
        return []
    lines = ["## Cold-start probe", "",
             "Test users whose target item appears in no training sequence (`eval.cold_start`), mean over seeds.", "",
             "| family | config | test/recall@10 | " + " | ".join(COLD_START) + " | cold users |",
             "|---|---|---|---|---|---|"]
    for group in measured:
        users = group.values("test_cold_start/num_users")
        cells = [f"{group.values(name).mean():.4f}" if len(group.values(name)) else "–"
                 for name in ("test/recall@10", *COLD_START)]
        lines.append(f"| {FAMILY_NAMES.get(group.family, group.family)} | {group.label} | " + " | ".join(cells)
                     + f" | {int(users.mean()) if len(users) else '–'} |")
    return [*lines, ""]


def _llm_key(group: Group) -> str:
    """A configuration's LLM-as-RS settings: its overrides without the ones that choose the CF source."""
    return json.dumps({k: v for k, v in group.overrides.items() if not k.startswith(CF_KEYS)}, sort_keys=True,
                      default=str) + f"|{group.data_fraction}"


def _cf_markdown(groups: Sequence[Group], metric: str) -> list[str]:
    """The CF-injection probe: each CF-injected LLM-as-RS configuration next to the no-CF control with the same
    LLM settings (same overrides apart from the SASRec's and `cf_source`), and the gain in `metric`."""
    injected = [g for g in groups if g.family == "llm" and g.cf_injected]
    if not injected:
        return []
    controls = {}
    for group in groups:
        if group.family == "llm" and not group.cf_injected:
            controls.setdefault((group.model, _llm_key(group)), group)
    lines = ["## CF-injection probe", "",
             f"LLM-as-RS with SASRec item embeddings projected into its prompts, next to the no-CF control with the "
             f"same LLM settings; {metric}, mean over seeds. These configurations are left out of the LLM-as-RS "
             f"fit, whose law has no CF-source term.", "",
             f"| config | LLM params | CF projection | {metric} | control | gain | seeds |",
             "|---|---|---|---|---|---|---|"]
    for group in injected:
        values = group.values(metric)
        control = controls.get((group.model, _llm_key(group)))
        base = control.values(metric) if control is not None else np.array([])
        mean = f"{values.mean():.4f}" if len(values) else "–"
        reference = f"{base.mean():.4f}" if len(base) else "–"
        gain = f"{values.mean() - base.mean():+.4f}" if len(values) and len(base) else "–"
        lines.append(f"| {group.label} | {_count(group.components.get('llm'))} | "
                     f"{_count(group.components.get(CF_COMPONENT))} | {mean} | {reference} | {gain} | "
                     f"{len(group.rows)} |")
    return [*lines, ""]


def _fit_markdown(result: Mapping[str, Any]) -> list[str]:
    lines = [f"### Fit of {result['metric']}: form `{result['form']}`", ""]
    if result["status"] != "fitted":
        lines += [f"Not fitted: {result['reason']}.", ""]
        lines += [f"- {note}" for note in result["notes"]] + ([""] if result["notes"] else [])
        return lines
    fit, paper = result["fit"], result.get("paper")
    level = fit["bootstrap"]["level"]
    lines += [f"`{result['metric']} = {fit['expression']}`", ""]
    header = f"| parameter | value | {level:.0%} CI | status | " + ("paper (Table 1) |" if paper else "")
    lines += [header, "|---|---|---|---|" + ("---|" if paper else "")]
    for name, entry in fit["parameters"].items():
        kind = "fitted" if entry["fitted"] else ("unused" if entry["value"] is None else "fixed")
        ci = f"[{_num(entry['ci'][0])}, {_num(entry['ci'][1])}]" if entry["ci"] else "–"
        row = f"| {name} | {_num(entry['value'])} | {ci} | {kind} |"
        if paper:
            row += f" {_num(paper.get(name))} |"
        lines.append(row)
    boot = fit["bootstrap"]
    lines += ["", f"R² {_num(fit['r2'])}" + (f" (paper {_num(paper.get('r2'))})" if paper else "") +
              f" on {fit['n_points']} points (seed means); RMSE {_num(fit['rmse'], 3)}; Huber delta "
              f"{fit['huber_delta']:g}; L-BFGS-B {'converged' if fit['converged'] else 'did not converge'}"
              + (f" (at bounds: {', '.join(fit['at_bounds'])})" if fit["at_bounds"] else "") + ". "
              f"Bootstrap: {boot['n']} resamples ({boot['resample']}), {boot['n_failed']} failed "
              f"({boot.get('n_degenerate', 0)} whose points cannot determine the fit), seed {boot['seed']}.",
              ""]
    held = fit["held_out"]
    loo, largest = held["leave_one_out"], held["largest"]
    if loo:
        lines.append(f"- Leave-one-out over points: mean abs error {_num(loo['mean_abs_error'], 3)}, mean relative "
                     f"{loo['mean_rel_error']:.1%}, max abs {_num(loo['max_abs_error'], 3)}.")
    if largest:
        lines.append(f"- Largest point ({largest['point']}) predicted from the others: {_num(largest['predicted'])} "
                     f"vs observed {_num(largest['observed'])} (abs {_num(largest['abs_error'], 3)}, relative "
                     f"{largest['rel_error']:.1%}).")
    for point, reason in held.get("not_identified", {}).items():
        lines.append(f"- Held out {point}: not predicted, {reason}.")
    if not loo and not largest and not held.get("not_identified"):
        lines.append(f"- Held-out error: not computed, it needs at least {held['needs_points']} distinct points.")
    lines += [f"- {note}" for note in result["notes"]]
    if paper:
        lines.append("- Paper values: Liu et al. 2025, Table 1 (counts in millions assumed, see jaxrec.scaling.laws).")
    lines.append("")
    return lines


def parse_fixed(items: Sequence[str] | None) -> dict[str, float]:
    """`NAME=VALUE` strings (the CLI's --fix) -> {name: value}, names checked against the known forms."""
    from jaxrec.config import ConfigError
    from jaxrec.scaling.laws import PRESETS

    known = sorted({n for law in PRESETS.values() for n in law.parameter_names})
    fixed = {}
    for item in items or ():
        name, _, raw = item.partition("=")
        if name not in known or not re.fullmatch(r"[-+0-9.eE]+", raw or "x"):
            raise ConfigError(f"--fix {item!r}: expected NAME=NUMBER with NAME one of {', '.join(known)}")
        fixed[name] = float(raw)
    return fixed
