"""One entry point to every dataset source: `load_dataset(source, path, **options)`.

Sources: "p5" (sequences.txt + items.jsonl + datamaps.json), "amazon2014" (raw reviews/meta .json.gz),
"movielens" (ml-1m / ml-100k folders), "synthetic" (generated; options are `SyntheticConfig` fields).
A folder can also be given alone; its format is detected from the files in it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxrec.data.types import DataError, Dataset

SOURCES = ("p5", "amazon2014", "movielens", "synthetic")


def load_configured(data: Any) -> Dataset:
    """The dataset a config's `data` group names (`source`, `path`, `options`), as `jaxrec run` loads it."""
    return load_dataset(data.source, data.get("path") or None, **data.get("options", {}).to_dict())


def load_dataset(source: str, path: str | Path | None = None, **options: Any) -> Dataset:
    """Load a dataset from a named source; `path` is required for every source but "synthetic"."""
    if source not in SOURCES:
        raise DataError(f"unknown dataset source {source!r}; expected one of {', '.join(SOURCES)}")
    if source == "synthetic":
        from jaxrec.data.synthetic import SyntheticConfig, generate

        known = {f.name for f in dataclasses.fields(SyntheticConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DataError(f"unknown synthetic option(s) {unknown}; expected some of {sorted(known)}")
        return generate(SyntheticConfig(**options))
    if not path:
        raise DataError(f"dataset source {source!r} needs a path (config field data.path)")
    if source == "p5":
        from jaxrec.data.p5 import read_p5

        return read_p5(path, **options)
    if source == "amazon2014":
        from jaxrec.data.amazon import read_amazon2014

        return read_amazon2014(path, **options)
    from jaxrec.data.movielens import read_movielens

    return read_movielens(path, **options)


def detect_source(path: str | Path) -> str:
    """Name the source whose files are in `path`."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"not a dataset folder: {folder}")
    names = {p.name for p in folder.iterdir()}
    if {"sequences.txt", "items.jsonl"} <= names:
        return "p5"
    if any(n.startswith("reviews_") and (n.endswith("_5.json.gz") or n.endswith("_5.json")) for n in names):
        return "amazon2014"
    if "ratings.dat" in names or "u.data" in names:
        return "movielens"
    raise DataError(f"{folder}: no known dataset files (P5: sequences.txt + items.jsonl; raw Amazon 2014: "
                    f"reviews_<Category>_5.json.gz; MovieLens: ratings.dat or u.data)")


def load_spec(spec: str) -> Dataset:
    """Load from a command-line spec: a folder (format detected), "synthetic", or "synthetic:key=value,...".

    "<source>:<folder>" (e.g. "p5:../shared/data/amazon-beauty-2014") names the source explicitly.
    """
    head, _, rest = spec.partition(":")
    if head == "synthetic":
        options = {}
        for pair in filter(None, rest.split(",")):
            key, eq, value = pair.partition("=")
            if not eq:
                raise DataError(f"synthetic option {pair!r} is not key=value")
            options[key.strip()] = _number(value.strip())
        return load_dataset("synthetic", **options)
    if head in SOURCES and rest:
        return load_dataset(head, rest)
    return load_dataset(detect_source(spec), spec)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise DataError(f"synthetic option value {text!r} is not a number") from None
