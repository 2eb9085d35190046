"""`SIDTable`: every item's Semantic ID (quantizer codes + collision digit) and the maps between items and SIDs.

Saved as one `.npz` holding the codes and a JSON header (quantizer config, the embeddings' header, sizes, content
hash). Loading checks the content hash, so a corrupted or edited file fails loudly, and `load` can check that the
header matches what the caller expects (e.g. the same quantizer config) instead of silently using a stale table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "jaxrec.sid_table/1"


class SIDTableError(ValueError):
    """A SID table that is corrupted, malformed, or not the one the caller asked for."""


def codes_hash(codes: np.ndarray) -> str:
    codes = np.ascontiguousarray(codes, dtype=np.int32)
    return hashlib.sha256(repr(codes.shape).encode() + codes.tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class SIDTable:
    """codes[item_id - 1] is item `item_id`'s SID: `levels` quantizer codes then the collision digit."""

    codes: np.ndarray  # [num_items, levels + 1] int32
    header: dict[str, Any]

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        if codes.ndim != 2 or codes.shape[1] < 2 or not np.issubdtype(codes.dtype, np.integer):
            raise SIDTableError(f"SID codes must be an integer [items, levels + 1] array, got {codes.dtype} "
                                f"{codes.shape}")
        sizes = self.header.get("level_sizes")
        if sizes is None or len(sizes) != codes.shape[1]:
            raise SIDTableError(f"header level_sizes {sizes} does not match {codes.shape[1]} code positions")
        if codes.size and (codes.min() < 0 or np.any(codes.max(axis=0) >= np.asarray(sizes))):
            raise SIDTableError(f"SID codes must lie in [0, level_sizes) = {sizes}")
        keys = self._keys(codes)
        if len(np.unique(keys)) != len(keys):
            raise SIDTableError("SIDs are not unique: two items share all codes including the collision digit")
        object.__setattr__(self, "codes", codes.astype(np.int32))
        order = np.argsort(keys)
        object.__setattr__(self, "_sorted_keys", keys[order])
        object.__setattr__(self, "_sorted_items", (order + 1).astype(np.int32))

    @staticmethod
    def create(codes: np.ndarray, header: dict[str, Any]) -> SIDTable:
        """A table with sizes and the content hash filled into its header."""
        codes = np.asarray(codes, np.int32)
        if codes.ndim != 2 or codes.shape[1] < 2 or codes.shape[0] == 0:
            raise SIDTableError(f"SID codes must be a non-empty [items, levels + 1] array, got shape {codes.shape}")
        header = dict(header, format=FORMAT, num_items=int(codes.shape[0]), levels=int(codes.shape[1] - 1),
                      level_sizes=[int(size) for size in codes.max(axis=0) + 1], content_hash=codes_hash(codes))
        return SIDTable(codes, header)

    @property
    def num_items(self) -> int:
        return self.codes.shape[0]

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Vocabulary size of each code position (the last is the collision digit's)."""
        return tuple(int(size) for size in self.header["level_sizes"])

    def sid(self, item_id: int) -> tuple[int, ...]:
        if not 1 <= item_id <= self.num_items:
            raise KeyError(f"item id {item_id} outside 1..{self.num_items}")
        return tuple(int(c) for c in self.codes[item_id - 1])

    def items_for(self, sids: np.ndarray) -> np.ndarray:
        """[..., levels + 1] SIDs -> [...] item ids, -1 where no item has that SID (vectorised)."""
        sids = np.asarray(sids)
        if sids.shape[-1] != self.codes.shape[1]:
            raise SIDTableError(f"SIDs have {sids.shape[-1]} codes, the table {self.codes.shape[1]}")
        sizes = np.asarray(self.level_sizes)
        in_range = np.all((sids >= 0) & (sids < sizes), axis=-1)
        keys = self._keys(np.where(in_range[..., None], sids, 0))
        position = np.clip(np.searchsorted(self._sorted_keys, keys), 0, len(self._sorted_keys) - 1)
        found = in_range & (self._sorted_keys[position] == keys)
        return np.where(found, self._sorted_items[position], -1).astype(np.int32)

    def _keys(self, codes: np.ndarray) -> np.ndarray:
        """Mixed-radix int64 key per SID (radix = each position's vocabulary size from the header)."""
        sizes = np.asarray(self.header["level_sizes"])
        if np.sum(np.log2(np.maximum(sizes, 2))) > 62:
            raise SIDTableError(f"SID vocabulary {sizes.tolist()} too large for 64-bit keys")
        keys = np.zeros(codes.shape[:-1], np.int64)
        for position in range(codes.shape[-1]):
            keys = keys * int(sizes[position]) + codes[..., position]
        return keys

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, codes=self.codes, header=np.array(json.dumps(self.header, sort_keys=True)))
        temporary.replace(path)
        return path

    @staticmethod
    def load(path: str | Path, expect: dict[str, Any] | None = None) -> SIDTable:
        """Load and verify a table; `expect` maps header fields to the values they must have."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                codes, header = archive["codes"], json.loads(str(archive["header"]))
        except FileNotFoundError:
            raise
        except Exception as error:  # zip, key or JSON errors: all mean an unreadable artifact
            raise SIDTableError(f"{path}: not a readable SID table ({type(error).__name__}: {error})") from error
        if header.get("format") != FORMAT:
            raise SIDTableError(f"{path}: header format {header.get('format')!r}, expected {FORMAT!r}")
        if codes_hash(codes) != header.get("content_hash"):
            raise SIDTableError(f"{path}: codes do not match the header's content hash (corrupted or edited file)")
        for field, value in (expect or {}).items():
            if header.get(field) != value:
                raise SIDTableError(f"{path}: header field {field!r} is {header.get(field)!r}, expected {value!r}; "
                                    f"this table was made by a different configuration (use another workdir, or "
                                    f"rebuild it with --force)")
        try:
            return SIDTable(codes, header)
        except SIDTableError as error:
            raise SIDTableError(f"{path}: {error}") from error
