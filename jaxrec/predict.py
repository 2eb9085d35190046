"""`jaxrec predict`: recommendations from a finished run directory for given histories.

The run's resolved config (`config.json`) rebuilds the data and the model family; trained families restore their
best checkpoint, SID models read the run's verified SID table. Histories are item ids (1..N) or, with
`raw_ids=True`, the dataset's raw ids (e.g. ASINs), oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from jaxrec.data.sources import load_configured
from jaxrec.data.splits import configured_split
from jaxrec.data.types import PAD_ITEM, DataError


def run_config(workdir: Path) -> ml_collections.ConfigDict:
    """The resolved config a `jaxrec run` directory was made with (its config.json)."""
    path = workdir / "config.json"
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text())["config"])
    except FileNotFoundError:
        raise DataError(f"{path}: not found; is {workdir} a `jaxrec run` directory?") from None
    except (json.JSONDecodeError, KeyError) as error:
        raise DataError(f"{path}: not a jaxrec run config ({error})") from error


def parse_histories(lines: Sequence[str], raw_ids: Sequence[str], *, use_raw_ids: bool,
                    source: str = "--history") -> list[list[int]]:
    """One history per line, whitespace-separated item ids (or raw ids); unknown ids name the line and token."""
    index = {raw: i + 1 for i, raw in enumerate(raw_ids)} if use_raw_ids else None
    histories = []
    for number, line in enumerate(lines, 1):
        items = []
        for token in line.split():
            if index is not None:
                item = index.get(token)
            else:
                item = int(token) if token.isascii() and token.isdigit() else None  # not "²", which int() rejects
                item = item if item is not None and 1 <= item <= len(raw_ids) else None
            if item is None:
                kind = "raw item id" if use_raw_ids else f"item id (1..{len(raw_ids)})"
                raise DataError(f"{source}: line {number}: {token!r} is not a known {kind}")
            items.append(item)
        if not items:
            raise DataError(f"{source}: line {number}: empty history")
        histories.append(items)
    return histories


def predict(workdir: str | Path, lines: Sequence[str], *, model: str | None = None, k: int = 10,
            use_raw_ids: bool = False, source: str = "--history") -> list[dict[str, Any]]:
    """Top-k recommendations of `model` (default: the run's only trained model, or its only model) for each
    history line."""
    from jaxrec.models import registry

    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    workdir = Path(workdir)
    config = run_config(workdir)
    trained = [name for name, entry in config.models.items() if entry.family in registry.TRAINED]
    candidates = trained or list(config.models)  # a run of one untrained model (popularity) answers with it
    name = model or (candidates[0] if len(candidates) == 1 else None)
    if name is None or name not in config.models:
        raise DataError(f"{workdir}: choose a model with --model (this run has {sorted(config.models)})")
    data = config.data
    dataset = load_configured(data)
    split = configured_split(dataset, data)
    artifacts: dict[str, Any] = {}
    if "sid" in config:
        from jaxrec.sid.build import TABLE_FILE
        from jaxrec.sid.table import SIDTable

        artifacts["sid_table"] = SIDTable.load(workdir / "sid" / TABLE_FILE)
    cf_source = registry.cf_source(config.models[name])
    if cf_source:  # CF injection: the source model's item embeddings, from its own best checkpoint
        embeddings = registry.load(config.models[cf_source].family, config.models[cf_source], split,
                                   workdir / cf_source, artifacts).item_embeddings()
        artifacts["item_embeddings"] = {cf_source: embeddings}
    recommender = registry.load(config.models[name].family, config.models[name], split, workdir / name, artifacts)
    catalog = dataset.catalog
    histories = parse_histories(lines, catalog.raw_ids, use_raw_ids=use_raw_ids, source=source)
    length = int(config.eval.max_history)
    padded = np.full((len(histories), length), PAD_ITEM, np.int32)
    for row, items in enumerate(histories):
        recent = items[-length:]
        padded[row, length - len(recent):] = recent
    recommended = np.asarray(recommender.recommend(padded, k))
    return [{"history": items, "items": [int(i) for i in row if i > 0],
             "raw_ids": [catalog.raw_ids[i - 1] for i in row if i > 0],
             "titles": [catalog.title(int(i)) for i in row if i > 0]}
            for items, row in zip(histories, recommended)]
