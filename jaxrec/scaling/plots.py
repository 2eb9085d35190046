"""PNG plots for `jaxrec report`: metric vs parameter count (log x) with seed bands and fitted laws, and SID-GR vs
LLM-as-RS on one figure with the best SID-GR level marked.

Figures are `matplotlib.figure.Figure` objects saved through the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from jaxrec.scaling.report import Group

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _file_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", "_".join(parts)).strip("_") + ".png"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _series(ax, groups: Sequence[Group], metric: str, color: str, label: str) -> list[tuple[float, float]]:
    """Seed mean (line + markers), min-max band and the seeds themselves; returns (x, mean) per plotted point."""
    points = sorted(((g.x, g.values(metric)) for g in groups if g.x and len(g.values(metric))), key=lambda p: p[0])
    if not points:
        return []
    x = np.array([p[0] for p in points])
    means = np.array([v.mean() for _, v in points])
    ax.plot(x, means, "o-", color=color, label=label)
    ax.fill_between(x, [v.min() for _, v in points], [v.max() for _, v in points], color=color, alpha=0.2,
                    linewidth=0)
    for xi, values in points:
        ax.plot(np.full(len(values), xi), values, ".", color=color, alpha=0.5, markersize=4)
    return list(zip(x.tolist(), means.tolist()))


def _fit_curve(ax, groups: Sequence[Group], fit_result: Mapping[str, Any], color: str) -> None:
    """The fitted law: a smooth curve when x is a component and the law's other components are constant over the
    points, else the law's predictions at the points joined by a dashed line."""
    fit = fit_result.get("_fit")
    if fit is None:
        return
    law = fit.fit.law
    points = sorted((g for g in groups if g.x), key=lambda g: g.x)
    if not points:
        return
    comps = {c: np.array([g.components[c] for g in points], dtype=np.float64) for c in law.components}
    x_name = "total" if points[0].family == "llm" else "recommender"
    others_constant = all(np.ptp(v) == 0 for c, v in comps.items() if c != x_name)
    r2 = fit.fit.r2
    label = f"fit {law.name} (R²={r2:.3f})"
    if x_name in comps and others_constant:
        x = np.geomspace(min(g.x for g in points), max(g.x for g in points), 200)
        grid = {c: (x if c == x_name else np.full_like(x, v[0])) for c, v in comps.items()}
        ax.plot(x, fit.fit.predict(grid), "--", color=color, label=label)
    else:
        ax.plot([g.x for g in points], fit.fit.predict(comps), "x--", color=color, label=label + " at points")


def _axes_labels(ax, family: str | None, metric: str) -> None:
    ax.set_xscale("log")
    xlabel = {"llm": "total parameters", None: "parameters (SID-GR: recommender; LLM-as-RS: total)"}
    ax.set_xlabel(xlabel.get(family, "recommender (trainable) parameters"))
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def write_plots(out: Path, groups: Sequence[Group], fits: Sequence[Mapping[str, Any]],
                metrics: Sequence[str]) -> dict[Any, str]:
    """Per family and metric one figure (a series per model), plus `comparison` when SID-GR and LLM-as-RS are both
    present. Returns the file names (relative to `out`) keyed by (family, metric) and "comparison"."""
    from jaxrec.scaling.report import FAMILY_NAMES

    images: dict[Any, str] = {}
    families = []
    for group in groups:
        if group.x and group.family not in families:
            families.append(group.family)
    for family in families:
        models = sorted({g.model for g in groups if g.family == family})
        for metric in metrics:
            figure = Figure(figsize=(6.4, 4.4))
            ax = figure.add_subplot()
            plotted = False
            for model, color in zip(models, COLORS * 4):
                members = [g for g in groups if (g.family, g.model) == (family, model)]
                plotted |= bool(_series(ax, members, metric, color, model))
                for fit in fits:
                    if (fit["family"], fit["model"], fit["metric"]) == (family, model, metric):
                        _fit_curve(ax, members, fit, color)
            if not plotted:
                continue
            ax.set_title(f"{FAMILY_NAMES.get(family, family)}: {metric}")
            _axes_labels(ax, family, metric)
            images[(family, metric)] = _file_name(family, metric)
            _save(figure, out / images[(family, metric)])
    sid = [g for g in groups if g.family == "tiger" and g.x]
    llm = [g for g in groups if g.family == "llm" and g.x]
    if sid and llm:
        metric = metrics[0]
        figure = Figure(figsize=(6.4, 4.4))
        ax = figure.add_subplot()
        sid_points = _series(ax, sid, metric, COLORS[0], "SID-GR")
        _series(ax, llm, metric, COLORS[1], "LLM-as-RS")
        if sid_points:
            best_x, best = max(sid_points, key=lambda p: p[1])
            ax.axhline(best, color=COLORS[0], linestyle=":", label=f"best SID-GR {best:.4f}")
            ax.plot([best_x], [best], "*", color="black", markersize=14, label="best SID-GR point")
        popularity = [g for g in groups if g.family == "popularity" and len(g.values(metric))]
        if popularity:
            ax.axhline(float(popularity[0].values(metric).mean()), color="gray", linestyle="-.", label="popularity")
        ax.set_title(f"SID-GR vs LLM-as-RS: {metric}")
        _axes_labels(ax, None, metric)
        images["comparison"] = _file_name("sid_gr_vs_llm_as_rs", metric)
        _save(figure, out / images["comparison"])
    return images
