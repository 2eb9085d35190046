"""Reader for the P5 / S3-Rec preprocessed Amazon files: `sequences.txt`, `items.jsonl`, `datamaps.json`.

`sequences.txt` holds one user per line (`user_id item_id item_id ...`, 1-based ids, chronological order);
`items.jsonl` one JSON object per item in id order (`item_id`, `asin`, optional `title`, `categories`, ...);
`datamaps.json` (optional) maps ids back to reviewer ids and ASINs and is checked against `items.jsonl`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from jaxrec.data.types import Catalog, DataError, Dataset, unescape_html

_CATALOG_KEYS = {"item_id", "asin", "title", "categories", "brand", "price", "description"}


def read_p5(path: str | Path, name: str | None = None) -> Dataset:
    """Load a P5-format folder into a `Dataset` (item ids and user order exactly as in the files)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"P5 dataset folder not found: {folder}")
    report: dict[str, Any] = {"source": "p5", "path": str(folder)}
    catalog = _read_items(folder / "items.jsonl", report)
    datamaps = _read_datamaps(folder / "datamaps.json", catalog)
    user_numbers, offsets, items = _read_sequences(folder / "sequences.txt", catalog.num_items)
    if datamaps is not None:
        id2user = datamaps.get("id2user", {})
        missing = [u for u in user_numbers if str(u) not in id2user]
        if id2user and missing:
            raise DataError(f"{folder / 'datamaps.json'}: id2user has no entry for user id {missing[0]} "
                            f"({len(missing)} of {len(user_numbers)} users missing)")
        user_ids = tuple(id2user.get(str(u), str(u)) for u in user_numbers)
    else:
        user_ids = tuple(str(u) for u in user_numbers)
    return Dataset(name or folder.name, catalog, user_ids, offsets, items, report)


def _read_sequences(path: Path, num_items: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    text = _read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    user_numbers: list[int] = []
    lengths = np.empty(len(lines), dtype=np.int64)
    tokens: list[str] = []
    seen: dict[int, int] = {}
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) < 2:
            what = "an empty line" if not fields else f"user {fields[0]} with no items"
            raise DataError(f"{path}:{line_no}: expected 'user_id item_id ...', got {what}")
        try:
            user = int(fields[0])
        except ValueError:
            raise DataError(f"{path}:{line_no}: user id {fields[0]!r} is not an integer") from None
        if user in seen:
            raise DataError(f"{path}:{line_no}: duplicate user id {user} (first on line {seen[user]})")
        seen[user] = line_no
        user_numbers.append(user)
        lengths[line_no - 1] = len(fields) - 1
        tokens.extend(fields[1:])
    if not user_numbers:
        raise DataError(f"{path}: no users (empty file)")
    try:
        items = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):  # not an integer, or beyond int64
        items = None
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if items is None or items.min() < 1 or items.max() > num_items:
        bad = _first_bad_item(tokens, num_items)
        line_no = int(np.searchsorted(offsets, bad, side="right"))
        raise DataError(f"{path}:{line_no}: item id {tokens[bad]!r} is not an item of the catalogue "
                        f"(expected an integer in 1..{num_items}, as listed in items.jsonl)")
    return user_numbers, offsets, items.astype(np.int32)


def _first_bad_item(tokens: list[str], num_items: int) -> int:
    for index, token in enumerate(tokens):
        if not token.isdigit() or not 1 <= int(token) <= num_items:
            return index
    raise AssertionError("no bad token found")


def _read_items(path: Path, report: dict[str, Any]) -> Catalog:
    records = []
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            raise DataError(f"{path}:{line_no}: empty line")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{line_no}: malformed JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
        for key in ("item_id", "asin"):
            if key not in record:
                raise DataError(f"{path}:{line_no}: missing required field {key!r}")
        _check_item_fields(record, path, line_no)
        if record["item_id"] != line_no:
            raise DataError(f"{path}:{line_no}: item_id {record['item_id']!r} out of order "
                            f"(items must be listed in id order 1..N; expected {line_no})")
        records.append(record)
    if not records:
        raise DataError(f"{path}: no items (empty file)")

    def text_field(key: str) -> tuple[str | None, ...] | None:
        if not any(key in r for r in records):
            return None
        return tuple(_clean_text(r.get(key)) for r in records)

    titles = text_field("title")
    raw_titles = [r.get("title") for r in records]
    report["titles_html_unescaped"] = sum(t is not None and unescape_html(t) != t for t in raw_titles)
    report["items_without_title"] = sum(t is None for t in (titles or [None] * len(records)))
    categories = None
    if any("categories" in r for r in records):
        categories = tuple(_categories(r.get("categories"), path, i) for i, r in enumerate(records, start=1))
    prices = None
    if any("price" in r for r in records):
        prices = tuple(None if r.get("price") is None else float(r["price"]) for r in records)  # checked numbers
    extra_keys = sorted({k for r in records for k in r} - _CATALOG_KEYS)
    extra = {key: tuple(_clean_text(r.get(key)) for r in records) for key in extra_keys}
    raw_ids = tuple(str(r["asin"]) for r in records)
    try:
        return Catalog(raw_ids, titles, categories, text_field("brand"), prices, text_field("description"), extra)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


_TEXT_KEYS = ("title", "brand", "description")


def _check_item_fields(record: dict, path: Path, line_no: int) -> None:
    """The types `Catalog` needs, with the file, line and field named: an integer item_id, a non-empty string asin,
    strings (or null) for the text fields, a number or numeric string (or null) for the price."""
    def bad(key: str, expected: str) -> DataError:
        return DataError(f"{path}:{line_no}: field {key!r} must be {expected}, got {record[key]!r}")

    if isinstance(record["item_id"], bool) or not isinstance(record["item_id"], int):
        raise bad("item_id", "an integer")
    if not isinstance(record["asin"], str) or not record["asin"].strip():
        raise bad("asin", "a non-empty string")
    for key in _TEXT_KEYS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise bad(key, "a string or null")
    price = record.get("price")
    is_number = isinstance(price, (int, float)) and not isinstance(price, bool)
    if price is not None and not is_number and not _is_numeric_string(price):
        raise bad("price", "a number (or a numeric string) or null")


def _is_numeric_string(value: Any) -> bool:
    """A string `float` reads ("3.5", "1e3"), as some P5 dumps write prices."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    text = unescape_html(str(value)).strip()
    return text or None



def _categories(value: Any, path: Path, line_no: int) -> tuple[tuple[str, ...], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, list) for p in value):
        raise DataError(f"{path}:{line_no}: 'categories' must be a list of category paths (lists of strings)")
    return tuple(tuple(unescape_html(str(c)) for c in p) for p in value)


def _read_datamaps(path: Path, catalog: Catalog) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        datamaps = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from None
    if not isinstance(datamaps, dict):
        raise DataError(f"{path}: expected a JSON object (with 'id2item', ...), got {type(datamaps).__name__}")
    id2item = datamaps.get("id2item", {})
    if not isinstance(id2item, dict):
        raise DataError(f"{path}: 'id2item' must be an object mapping item ids to ASINs, got "
                        f"{type(id2item).__name__}")
    for item_id, raw in enumerate(catalog.raw_ids, start=1):
        mapped = id2item.get(str(item_id))
        if id2item and mapped != raw:
            raise DataError(f"{path}: id2item[{item_id}] is {mapped!r} but items.jsonl gives asin {raw!r}")
    return datamaps


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(f"required file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return text
