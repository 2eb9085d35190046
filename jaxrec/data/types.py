"""Core data types: a `Catalog` of items and a `Dataset` of per-user chronological item sequences.

Id conventions, used everywhere in jaxrec:
  * items are numbered 1..num_items; 0 is padding; -1 in a recommendation means "invalid / no item";
  * users are numbered 0..num_users-1 (row order of the dataset);
  * sequences are stored as CSR arrays (`offsets`, `items`) so a 300k-interaction dataset is two numpy arrays,
    not a list of Python lists.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from typing import Any

import numpy as np

PAD_ITEM = 0
INVALID_ITEM = -1

# Text fields a catalogue may carry; `text_coverage` reports each.
TEXT_FIELDS = ("title", "categories", "brand", "price", "description")


class DataError(ValueError):
    """Bad input data. The message names the file, line or field, and what was expected."""


def unescape_html(text: str) -> str:
    """HTML-unescape to a fixed point: Amazon titles hold entities, some escaped twice (`&amp;#8482;`)."""
    for _ in range(3):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return text


@dataclasses.dataclass(frozen=True)
class Catalog:
    """Items 1..num_items with their raw ids and (optional) text. Field lists are indexed by `item_id - 1`."""

    raw_ids: tuple[str, ...]
    titles: tuple[str | None, ...] | None = None
    categories: tuple[tuple[tuple[str, ...], ...] | None, ...] | None = None  # list of category paths per item
    brands: tuple[str | None, ...] | None = None
    prices: tuple[float | None, ...] | None = None
    descriptions: tuple[str | None, ...] | None = None
    # Source-specific per-item text, e.g. {"idgenrec_textual_id": (...)} for the P5 Sports files.
    extra: dict[str, tuple[str | None, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.raw_ids)
        fields = {f: getattr(self, f) for f in ("titles", "categories", "brands", "prices", "descriptions")}
        fields.update({f"extra[{k!r}]": v for k, v in self.extra.items()})
        for field, values in fields.items():
            if values is not None and len(values) != n:
                raise DataError(f"Catalog.{field} has {len(values)} entries but there are {n} items")
        seen: dict[str, int] = {}
        for index, raw in enumerate(self.raw_ids):
            if raw in seen:
                raise DataError(f"duplicate raw item id {raw!r} (items {seen[raw] + 1} and {index + 1})")
            seen[raw] = index

    @property
    def num_items(self) -> int:
        return len(self.raw_ids)

    def item_ids(self) -> np.ndarray:
        return np.arange(1, self.num_items + 1, dtype=np.int32)

    def _field(self, name: str, item_id: int) -> Any:
        if not 1 <= item_id <= self.num_items:
            raise KeyError(f"item id {item_id} outside 1..{self.num_items}")
        values = getattr(self, name)
        return None if values is None else values[item_id - 1]

    def title(self, item_id: int) -> str | None:
        return self._field("titles", item_id)

    def item(self, item_id: int) -> dict[str, Any]:
        """All known fields of one item as a plain dict (missing fields omitted)."""
        record: dict[str, Any] = {"item_id": item_id, "raw_id": self._field("raw_ids", item_id)}
        for key, field in (("title", "titles"), ("categories", "categories"), ("brand", "brands"),
                           ("price", "prices"), ("description", "descriptions")):
            value = self._field(field, item_id)
            if value is not None:
                record[key] = value
        for key, values in self.extra.items():
            if values[item_id - 1] is not None:
                record[key] = values[item_id - 1]
        return record

    def text_coverage(self) -> dict[str, float]:
        """Share of items that have each text field (non-empty)."""
        plural = {"title": "titles", "categories": "categories", "brand": "brands", "price": "prices",
                  "description": "descriptions"}
        coverage = {}
        for field in TEXT_FIELDS:
            values = getattr(self, plural[field])
            known = 0 if values is None else sum(v is not None and v != "" and v != () for v in values)
            coverage[field] = known / max(self.num_items, 1)
        for field, values in self.extra.items():
            coverage[field] = sum(v is not None and v != "" for v in values) / max(self.num_items, 1)
        return coverage


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A catalogue plus one chronological item sequence per user, in CSR form.

    `report` records what the reader did (filtered users/items, duplicates, unescaped titles...): nothing is dropped
    without being counted there.
    """

    name: str
    catalog: Catalog
    user_ids: tuple[str, ...]
    offsets: np.ndarray  # [num_users + 1] int64
    items: np.ndarray  # [num_interactions] int32, values in 1..num_items
    report: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.int64)
        items = np.asarray(self.items, dtype=np.int32)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "items", items)
        if offsets.ndim != 1 or len(offsets) != len(self.user_ids) + 1:
            raise DataError(f"dataset {self.name!r}: offsets must have num_users + 1 = {len(self.user_ids) + 1} "
                            f"entries, got shape {offsets.shape}")
        if offsets[0] != 0 or offsets[-1] != len(items) or np.any(np.diff(offsets) < 0):
            raise DataError(f"dataset {self.name!r}: offsets are not a valid CSR index over {len(items)} items")
        if len(items) and (items.min() < 1 or items.max() > self.catalog.num_items):
            bad = int(np.flatnonzero((items < 1) | (items > self.catalog.num_items))[0])
            user = int(np.searchsorted(offsets, bad, side="right") - 1)
            raise DataError(f"dataset {self.name!r}: user {self.user_ids[user]!r} has item id {int(items[bad])} "
                            f"outside the catalogue 1..{self.catalog.num_items}")

    @classmethod
    def from_sequences(cls, name: str, catalog: Catalog, user_ids: Sequence[str],
                       sequences: Sequence[Sequence[int]], report: dict[str, Any] | None = None) -> Dataset:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.fromiter((i for s in sequences for i in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(name, catalog, tuple(user_ids), offsets, items, dict(report or {}))

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return self.catalog.num_items

    @property
    def num_interactions(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user]:self.offsets[user + 1]]

    def stats(self) -> dict[str, Any]:
        """Users, items, interactions, sequence-length statistics and text-field coverage."""
        lengths = self.lengths()
        percentiles = np.percentile(lengths, [50, 90, 99]) if len(lengths) else [0, 0, 0]
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "density": self.num_interactions / max(self.num_users * self.num_items, 1),
            "sequence_length": {
                "min": int(lengths.min()) if len(lengths) else 0,
                "max": int(lengths.max()) if len(lengths) else 0,
                "mean": float(lengths.mean()) if len(lengths) else 0.0,
                "p50": float(percentiles[0]), "p90": float(percentiles[1]), "p99": float(percentiles[2]),
            },
            "items_never_interacted": int(self.num_items - len(np.unique(self.items))),
            "text_coverage": self.catalog.text_coverage(),
            "report": self.report,
        }
