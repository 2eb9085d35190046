"""Raw Amazon 2014 reader: exact hand-computed output on small files, k-core rounds, ordering, meta parsing, and
DataError (file + line + problem) on bad input."""

from __future__ import annotations

import ast
import gzip
import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jaxrec.data import amazon
from jaxrec.data.amazon import find_amazon2014_files, iterative_kcore, parse_meta_line, read_amazon2014
from jaxrec.data.types import DataError, unescape_html

# (user, item, time) in file order. Hand-traced 5-core:
#   round 1 drops U7 (3 reviews) and I6 (1 review, by U6); round 2 drops U6 (4 reviews left); then all >= 5.
REVIEWS = [
    ("U7", "I1", 100), ("U3", "I5", 50), ("U3", "I4", 40), ("U3", "I3", 40), ("U3", "I2", 60), ("U3", "I1", 10),
    ("U1", "I1", 5), ("U1", "I2", 6), ("U1", "I3", 7), ("U1", "I4", 8), ("U1", "I5", 9), ("U1", "I1", 20),
    ("U6", "I6", 1), ("U6", "I1", 2), ("U6", "I2", 3), ("U6", "I3", 4), ("U6", "I4", 5),
    ("U2", "I2", 30), ("U2", "I1", 30), ("U2", "I3", 31), ("U2", "I4", 32), ("U2", "I5", 33),
    ("U4", "I5", 1), ("U4", "I4", 2), ("U4", "I3", 3), ("U4", "I2", 4), ("U4", "I1", 5),
    ("U5", "I3", 1000), ("U5", "I1", 900), ("U5", "I2", 800), ("U5", "I5", 700), ("U5", "I4", 600),
    ("U7", "I2", 101), ("U7", "I3", 102),
]
# Users by first review among survivors: U3, U1, U2, U4, U5. Items by first appearance in the chronological
# sequences: U3 reads I1 (10), I4 (40), I3 (40, after I4 in the file), I5 (50), I2 (60) -> ids 1..5.
EXPECTED_USERS = ("U3", "U1", "U2", "U4", "U5")
EXPECTED_ITEMS = ("I1", "I4", "I3", "I5", "I2")
EXPECTED_SEQUENCES = [[1, 2, 3, 4, 5], [1, 5, 3, 2, 4, 1], [5, 1, 3, 2, 4], [4, 2, 3, 5, 1], [2, 4, 5, 1, 3]]

META = [
    repr({"asin": "I1", "related": {"also_bought": ["I2", "I3"]}, "title": "  Tom &amp; Jerry  ", "brand": "Acme",
          "price": 3.5, "categories": [["Beauty", "Makeup & Nails"], ["Beauty", "Skin"]], "description": "  "}),
    repr({"asin": "I6", "title": "removed by the filter"}),
    "",
    repr({"asin": "I2", "title": "Women's &quot;Best&quot; Cream", "price": 10, "salesRank": {"Beauty": 3}}),
    "{'asin': 'I3', 'title': 'Caf\\xe9 \\'Noir\\' \"X\"', 'brand': 'B &amp; B', 'imUrl': 'http://x/y.jpg'}",
    "{'title': 'Five', 'categories': [], 'asin': 'I5', 'description': 'Fish &amp; chips'}",
    repr({"asin": "I1", "title": "a later duplicate line"}),
    repr({"asin": "NOT-REVIEWED", "title": "x"}),
]


def review_line(user: str, item: str, time: int, ensure_ascii: bool = True) -> str:
    record = {"reviewerID": user, "asin": item, "reviewerName": "Some \"One\"", "helpful": [0, 1],
              "reviewText": "Very nice. \u00e9\u00e8 \u2019 \\ / \t", "overall": 5.0, "summary": "ok",
              "unixReviewTime": time, "reviewTime": "01 1, 2014"}
    return json.dumps(record, ensure_ascii=ensure_ascii)


def write(path: Path, lines: list[str] | str | bytes, gz: bool = True) -> Path:
    data = lines if isinstance(lines, bytes) else (
        lines if isinstance(lines, str) else "".join(line + "\n" for line in lines)).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


def make_category(folder: Path, reviews: list[str] | str | bytes | None = None, meta: list[str] | None = None,
                  category: str = "Beauty", gz: bool = True) -> Path:
    suffix = ".json.gz" if gz else ".json"
    lines = [review_line(*row) for row in REVIEWS] if reviews is None else reviews
    write(folder / f"reviews_{category}_5{suffix}", lines, gz)
    write(folder / f"meta_{category}{suffix}", META if meta is None else meta, gz)
    return folder


def sequences(dataset) -> list[list[int]]:
    return [dataset.sequence(u).tolist() for u in range(dataset.num_users)]


# --------------------------------------------------------------------------------------------------- output


def test_reads_hand_computed_dataset(tmp_path: Path) -> None:
    dataset = read_amazon2014(make_category(tmp_path))
    assert dataset.name == "amazon2014-Beauty"
    assert dataset.user_ids == EXPECTED_USERS
    assert dataset.catalog.raw_ids == EXPECTED_ITEMS
    assert sequences(dataset) == EXPECTED_SEQUENCES
    assert dataset.offsets.tolist() == [0, 5, 11, 16, 21, 26]
    report = dataset.report
    expected = {
        "reviews_read": 34, "users_read": 7, "items_read": 6, "kcore_iterations": 2, "users_removed_by_kcore": 2,
        "items_removed_by_kcore": 1, "interactions_removed_by_kcore": 8, "users": 5, "items": 5, "interactions": 26,
        "duplicate_user_item_reviews_kept": 1, "tied_timestamps": 2, "items_without_meta": 1,
        "titles_html_unescaped": 2, "brands_html_unescaped": 1, "descriptions_html_unescaped": 1,
        "meta_duplicate_asins": 1, "meta_lines_read": 7, "blank_lines": 0, "min_count": 5, "category": "Beauty",
    }
    assert {key: report[key] for key in expected} == expected


def test_meta_fields(tmp_path: Path) -> None:
    catalog = read_amazon2014(make_category(tmp_path)).catalog
    assert catalog.item(1) == {"item_id": 1, "raw_id": "I1", "title": "Tom & Jerry", "brand": "Acme", "price": 3.5,
                               "categories": (("Beauty", "Makeup & Nails"), ("Beauty", "Skin"))}
    assert catalog.descriptions[0] is None  # whitespace only
    assert catalog.item(2) == {"item_id": 2, "raw_id": "I4"}  # no meta line
    assert catalog.item(3) == {"item_id": 3, "raw_id": "I3", "title": "Caf\xe9 'Noir' \"X\"", "brand": "B & B"}
    assert catalog.item(4) == {"item_id": 4, "raw_id": "I5", "title": "Five", "description": "Fish & chips"}
    assert catalog.item(5) == {"item_id": 5, "raw_id": "I2", "title": 'Women\'s "Best" Cream', "price": 10.0}
    assert isinstance(catalog.prices[4], float)


def test_plain_json_files_give_the_same_dataset(tmp_path: Path) -> None:
    gz = read_amazon2014(make_category(tmp_path / "gz"))
    plain = read_amazon2014(make_category(tmp_path / "plain", gz=False), category="Beauty")
    assert sequences(gz) == sequences(plain)
    assert gz.catalog == plain.catalog
    assert plain.report["reviews_file"].endswith("reviews_Beauty_5.json")


def test_path_may_be_the_reviews_file(tmp_path: Path) -> None:
    make_category(tmp_path)
    dataset = read_amazon2014(tmp_path / "reviews_Beauty_5.json.gz")
    assert sequences(dataset) == EXPECTED_SEQUENCES


def test_min_count_one_keeps_everything(tmp_path: Path) -> None:
    dataset = read_amazon2014(make_category(tmp_path), min_count=1)
    assert dataset.num_interactions == len(REVIEWS)
    assert dataset.report["kcore_iterations"] == 0
    assert dataset.user_ids == ("U7", "U3", "U1", "U6", "U2", "U4", "U5")
    assert dataset.sequence(0).tolist() == [1, 2, 3]  # U7: I1, I2, I3 are the first items seen


def test_iterative_kcore_directly() -> None:
    users = np.array([0, 0, 1, 1, 2, 1])
    items = np.array([0, 1, 0, 1, 0, 2])
    keep, rounds = iterative_kcore(users, items, 2)
    # round 1: user 2 (1 review) and item 2 (1 review) go; then users 0, 1 and items 0, 1 have 2 each
    assert keep.tolist() == [0, 1, 2, 3] and rounds == 1
    keep, rounds = iterative_kcore(users, items, 3)
    assert keep.tolist() == [] and rounds == 2


def test_whitespace_crlf_bom_blank_lines_and_multimember_gzip(tmp_path: Path) -> None:
    lines = [review_line(*row) for row in REVIEWS]
    text = "\ufeff" + "\r\n".join(lines[:10]) + "\r\n\r\n   \n" + "\n".join("  " + line + " " for line in lines[10:])
    data = text.encode("utf-8")
    members = gzip.compress(data[:1000]) + gzip.compress(data[1000:])
    folder = tmp_path / "odd"
    write(folder / "reviews_Beauty_5.json.gz", members, gz=False)
    write(folder / "meta_Beauty.json.gz", META)
    dataset = read_amazon2014(folder)
    assert sequences(dataset) == EXPECTED_SEQUENCES
    assert dataset.report["blank_lines"] == 2


def test_small_blocks_match_a_naive_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Block and chunk boundaries everywhere: same result as a straightforward per-line implementation."""
    rng = np.random.default_rng(0)
    rows = [(f"U{u}", f"I{i}", int(t)) for u, i, t in zip(rng.zipf(1.6, 3000) % 400, rng.zipf(1.3, 3000) % 300,
                                                            rng.integers(0, 50, 3000))]
    lines = [review_line(*row, ensure_ascii=k % 2 == 0) for k, row in enumerate(rows)]  # raw UTF-8 too
    folder = make_category(tmp_path, reviews=lines,
                           meta=[repr({"asin": f"I{i}", "title": f"t{i}"}) for i in range(300)])
    monkeypatch.setattr(amazon, "_BLOCK_BYTES", 700)
    monkeypatch.setattr(amazon, "_META_BLOCK_BYTES", 90)
    monkeypatch.setattr(amazon, "_READ_BYTES", 513)
    monkeypatch.setattr(amazon, "_FIRST_READ_BYTES", 100)
    monkeypatch.setattr(amazon, "_MAX_OUTPUT_BYTES", 1500)
    dataset = read_amazon2014(folder)
    users, seqs = naive_reference(rows, 5)
    assert dataset.user_ids == tuple(users)
    assert [[dataset.catalog.raw_ids[i - 1] for i in seq] for seq in sequences(dataset)] == seqs
    assert dataset.catalog.titles == tuple(f"t{raw[1:]}" for raw in dataset.catalog.raw_ids)


def naive_reference(rows: list[tuple[str, str, int]], k: int) -> tuple[list[str], list[list[str]]]:
    kept = list(enumerate(rows))
    while True:
        user_count: dict[str, int] = {}
        item_count: dict[str, int] = {}
        for _, (user, item, _) in kept:
            user_count[user] = user_count.get(user, 0) + 1
            item_count[item] = item_count.get(item, 0) + 1
        smaller = [(n, row) for n, row in kept if user_count[row[0]] >= k and item_count[row[1]] >= k]
        if len(smaller) == len(kept):
            break
        kept = smaller
    first_review = {}
    for n, (user, _, _) in enumerate(rows):
        first_review.setdefault(user, n)
    users = sorted({row[0] for _, row in kept}, key=first_review.__getitem__)
    seqs = [[item for _, (_, item, _) in sorted(((t, n), (u, i, t)) for n, (u, i, t) in kept if u == user)]
            for user in users]
    return users, seqs


# ---------------------------------------------------------------------------------------------------- files


def test_category_inferred_or_required(tmp_path: Path) -> None:
    make_category(tmp_path)
    assert find_amazon2014_files(tmp_path)[0] == "Beauty"
    make_category(tmp_path, category="Toys_and_Games", gz=False)
    with pytest.raises(DataError, match="several categories.*Beauty.*Toys_and_Games.*category="):
        read_amazon2014(tmp_path)
    assert read_amazon2014(tmp_path, category="Toys_and_Games").name == "amazon2014-Toys_and_Games"


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        read_amazon2014(tmp_path / "absent")
    with pytest.raises(DataError, match="no reviews_<Category>_5.json.gz"):
        read_amazon2014(tmp_path)
    write(tmp_path / "reviews_Beauty_5.json.gz", [review_line(*row) for row in REVIEWS])
    with pytest.raises(DataError, match="missing meta_Beauty.json.gz"):
        read_amazon2014(tmp_path)


# ------------------------------------------------------------------------------------------------ bad input


def lines_with(bad_line: str, at: int = 3) -> list[str]:
    lines = [review_line(*row) for row in REVIEWS]
    lines.insert(at - 1, bad_line)
    return lines


@pytest.mark.parametrize(("bad", "problem"), [
    ('{"reviewerID": "A", "asin": "B", "unixReviewTime": 12', "malformed JSON"),
    ('{"reviewerID": "A", "asin": "B", "unixReviewTime": 12} {"x": 1}', "malformed JSON: Extra data"),
    ("not json at all", "malformed JSON"),
    ('["reviewerID", "asin"]', "expected a JSON object, got list"),
    ('{"reviewerID": "A", "asin": "B", "overall": 5.0}', "missing required field 'unixReviewTime'"),
    ('{"asin": "B", "unixReviewTime": 12}', "missing required field 'reviewerID'"),
    ('{"reviewerID": "A", "asin": "B", "unixReviewTime": "2014-01-29"}', "'unixReviewTime' must be an integer"),
    ('{"reviewerID": "A", "asin": "B", "unixReviewTime": 1391040000.5}', "'unixReviewTime' must be an integer"),
    ('{"reviewerID": "A", "asin": "B", "unixReviewTime": true}', "'unixReviewTime' must be an integer"),
    ('{"reviewerID": "A", "asin": "B", "unixReviewTime": 99999999999999999999}', "must be an integer"),
    ('{"reviewerID": "A", "asin": "", "unixReviewTime": 12}', "'asin' must be a non-empty string"),
    ('{"reviewerID": 7, "asin": "B", "unixReviewTime": 12}', "'reviewerID' must be a non-empty string"),
])
def test_bad_review_line_names_file_and_line(tmp_path: Path, bad: str, problem: str) -> None:
    folder = make_category(tmp_path, reviews=lines_with(bad, at=3))
    with pytest.raises(DataError) as error:
        read_amazon2014(folder)
    message = str(error.value)
    assert str(folder / "reviews_Beauty_5.json.gz") in message
    assert "line 3:" in message and problem in message


def test_bad_line_number_across_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(amazon, "_BLOCK_BYTES", 1000)
    lines = [review_line(*row) for row in REVIEWS] * 40
    lines[1233] = lines[1233][:-1]
    lines.insert(5, "")
    with pytest.raises(DataError, match=r"line 1235: malformed JSON"):
        read_amazon2014(make_category(tmp_path, reviews=lines))


def test_invalid_utf8(tmp_path: Path) -> None:
    data = "".join(line + "\n" for line in lines_with("PLACEHOLDER", at=2)).encode().replace(
        b"PLACEHOLDER", b'{"reviewerID": "\xff", "asin": "B", "unixReviewTime": 1}')
    with pytest.raises(DataError, match=r"line 2: not valid UTF-8"):
        read_amazon2014(make_category(tmp_path, reviews=data))


def test_truncated_gzip(tmp_path: Path) -> None:
    folder = make_category(tmp_path, reviews=[review_line(*row) for row in REVIEWS] * 20)
    path = folder / "reviews_Beauty_5.json.gz"
    path.write_bytes(path.read_bytes()[:-30])
    before = threading.active_count()
    with pytest.raises(DataError, match=r"reviews_Beauty_5.json.gz: truncated or corrupt gzip"):
        read_amazon2014(folder)
    assert threading.active_count() == before  # the reader thread is gone


def test_corrupt_gzip(tmp_path: Path) -> None:
    folder = make_category(tmp_path)
    path = folder / "reviews_Beauty_5.json.gz"
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # CRC
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"reviews_Beauty_5.json.gz: truncated or corrupt gzip.*incorrect data check"):
        read_amazon2014(folder)


@pytest.mark.parametrize("gz", [True, False])
def test_empty_reviews_file(tmp_path: Path, gz: bool) -> None:
    with pytest.raises(DataError, match=r"reviews_Beauty_5.json(.gz)?: empty file"):
        read_amazon2014(make_category(tmp_path, reviews="\n\n", gz=gz))


def test_empty_meta_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"meta_Beauty.json.gz: empty file"):
        read_amazon2014(make_category(tmp_path, meta=[]))


def test_nothing_survives(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no interactions survive the 50-core filter"):
        read_amazon2014(make_category(tmp_path), min_count=50)


@pytest.mark.parametrize(("bad", "problem"), [
    ("{'asin': 'I1', 'title': oops}", "not a Python dict literal"),
    ("{'asin': 'I1', 'title': 'unterminated}", "not a Python dict literal"),
    ("['I1', 'title']", "expected a Python dict literal, got list"),
    ("{'title': 'no asin'}", "missing or empty 'asin'"),
    ("{'asin': 'I1', 'title': 5}", "field 'title' must be a string"),
    ("{'asin': 'I1', 'price': '3 dollars'}", "field 'price' must be a number"),
    ("{'asin': 'I1', 'categories': ['Beauty']}", "'categories' must be a list of lists of strings"),
    ("{'asin': 'I1', 'title': __import__('os').getcwd()}", "not a Python dict literal"),
])
def test_bad_meta_line_names_file_and_line(tmp_path: Path, bad: str, problem: str) -> None:
    meta = [repr({"asin": "I2"}), "", bad, repr({"asin": "I3"})]
    folder = make_category(tmp_path, meta=meta)
    with pytest.raises(DataError) as error:
        read_amazon2014(folder)
    message = str(error.value)
    assert str(folder / "meta_Beauty.json.gz") in message and "line 3:" in message and problem in message


# ------------------------------------------------------------------------------------------ literal parsing

LITERALS = [
    "{'a': 'x'}", "{'a': \"it's\"}", "{'a': 'say \"hi\"'}", "{'a': 'x', 'b': \"y'z\", 'c': 'w\"v'}",
    "{'a': \"it's\", 'b': 'q\"', 'c': \"r's\"}", "{'a': True}", "{'a': (1, 2)}", "{'a': [1, 2,]}", "{'a': 1e5}",
    "{'a': -3, 'b': 2.50, 'c': [[1], []]}", "{'a': u'x'}", "{'a': 'tab\there'}", "{'a': '''x'''}", "{'a': 'a' 'b'}",
    "{'a': 'null'}", "{'a': 'NaN'}", "{1: 'x'}", "{'a': '\\u00e9\\n'}", "{'a': \"x\", \"b\": 'y'}",
    "{'a': 'x\", \"b\": \"y'}", "{'k': \"'\", 'm': '\"'}", "{'a': None}", "{'a': {'b': {'c': ['d']}}}",
    "{'a': '\"', 'b': \"'\"}", "{'a': 1_000}", "{'a': 0x1f}", "{'a': .5}", "{'a': 1.}", "{'a': '' ''}",
]


@pytest.mark.parametrize("text", LITERALS)
def test_fast_literal_path_equals_literal_eval(text: str) -> None:
    expected = ast.literal_eval(text)
    fast = amazon._literal_via_json(text)
    assert fast is None or (fast == expected and type(fast) is type(expected))
    if isinstance(expected, dict) and "a" in expected:
        parsed = parse_meta_line(text.replace("{", "{'asin': 'Z', ", 1).encode())
        assert {key: value for key, value in parsed.items() if key != "asin"} == expected


def test_fast_literal_path_is_used_for_ordinary_lines() -> None:
    assert amazon._literal_via_json(META[0]) == ast.literal_eval(META[0])
    assert amazon._literal_via_json(META[3]) == ast.literal_eval(META[3])


def test_round_trip_of_the_real_beauty_sequences(beauty_dir: Path, tmp_path: Path) -> None:
    """Raw files rebuilt from the shared Beauty data (file grouped by asin, times per user increasing) read back to
    exactly the standard sequences and unescaped titles. The data are already 5-core: nothing is removed."""
    import random

    sequences_raw = {}
    rows = []
    for line in (beauty_dir / "sequences_raw.txt").read_text(encoding="utf-8").splitlines():
        user, *items = line.split()
        sequences_raw[user] = items
        start = random.Random(user).randrange(10**9, 13 * 10**8)
        rows += [(item, user, start + 86400 * k) for k, item in enumerate(items)]
    rows.sort()
    write(tmp_path / "reviews_Beauty_5.json.gz",
          [f'{{"reviewerID": "{user}", "asin": "{item}", "overall": 5.0, "unixReviewTime": {time}}}'
           for item, user, time in rows])
    titles = {}
    meta = []
    for line in (beauty_dir / "items.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        titles[record["asin"]] = record.get("title")
        meta.append(repr({key: record[key] for key in ("asin", "title", "categories") if key in record}))
    write(tmp_path / "meta_Beauty.json.gz", meta)
    dataset = read_amazon2014(tmp_path)
    assert dataset.report["interactions_removed_by_kcore"] == 0
    assert (dataset.num_users, dataset.num_items, dataset.num_interactions) == (22363, 12101, 198502)
    read_back = {dataset.user_ids[u]: [dataset.catalog.raw_ids[i - 1] for i in dataset.sequence(u)]
                 for u in range(dataset.num_users)}
    assert read_back == sequences_raw
    assert dataset.catalog.titles == tuple(None if titles[asin] is None else unescape_html(titles[asin]).strip()
                                           for asin in dataset.catalog.raw_ids)
    # Independent of unescape_html: double-escaped titles (&amp;#8482) leave no entity behind.
    entity = re.compile(r"&(#\d+|#x[0-9a-f]+|amp;|quot;|lt;|gt;|apos;|nbsp;)", re.I)
    assert not any(entity.search(t or "") for t in dataset.catalog.titles)


def _random_value(rng: np.random.Generator, depth: int = 0) -> Any:
    alphabet = list("ab '\"\\,:{}[]()\n\t\x00\x7f&;") + ["\u00e9", "\u2019", "\ud800", "\U0001f600", "\u200b",
                                                        "&amp;", "true", "\\x41", "\\'"]
    kind = int(rng.integers(0, 8 if depth < 2 else 4))
    if kind <= 1:
        return "".join(rng.choice(alphabet, size=int(rng.integers(0, 8))))
    if kind == 2:
        return [int(rng.integers(-5, 5)), float(rng.normal()), None, 1e300 * 10, -0.0][int(rng.integers(0, 5))]
    if kind == 3:
        return bool(rng.integers(0, 2))
    if kind in (4, 5):
        return [_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    if kind == 6:
        return tuple(_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 3))))
    return {str(_random_value(rng, 2)): _random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))}


@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")  # literal_eval on corrupted text
def test_fast_literal_path_fuzz_against_literal_eval() -> None:
    """Random dicts (repr, with every quote and escape mix) and corrupted variants: the fast path gives exactly the
    value `ast.literal_eval` gives, or defers (None); it never accepts text that `ast.literal_eval` rejects."""
    rng = np.random.default_rng(0)
    corruptions = list("'\"\\,{}[]: x") + ["\\x", "\\u12", "\\'"]
    accepted = 0
    for case in range(3000):
        text = repr({"asin": "B0", **{str(k): _random_value(rng) for k in range(int(rng.integers(1, 5)))}})
        if case % 2:
            at = int(rng.integers(0, len(text)))
            edit = int(rng.integers(0, 3))
            text = (text[:at] + str(rng.choice(corruptions)) + text[at + (edit == 1):] if edit else
                    text[:at] + text[at + 1:])
        try:
            expected = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            assert amazon._literal_via_json(text) is None, text
            continue
        fast = amazon._literal_via_json(text)
        if fast is not None:
            accepted += 1
            assert repr(fast) == repr(expected), text
    assert accepted > 300  # the fast path is exercised, escapes included


def test_reader_leaves_no_thread_and_restores_the_switch_interval(tmp_path: Path) -> None:
    import sys

    before, threads = sys.getswitchinterval(), threading.active_count()
    read_amazon2014(make_category(tmp_path / "ok"))
    with pytest.raises(DataError):
        read_amazon2014(make_category(tmp_path / "bad", reviews=["not json"]))
    assert sys.getswitchinterval() == before and threading.active_count() == threads
