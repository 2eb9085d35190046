"""P5 reader: hand-checked small folders, every bad-input path (file and line named), and the real benchmarks."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxrec.data.p5 import read_p5
from jaxrec.data.sources import detect_source, load_dataset, load_spec
from jaxrec.data.types import DataError

ITEMS = [
    {"item_id": 1, "asin": "A1", "title": "Shampoo &amp; Conditioner", "categories": [["Beauty", "Hair Care"]],
     "idgenrec_textual_id": "shampoo set"},
    {"item_id": 2, "asin": "A2", "title": "Plain Soap", "categories": [["Beauty"], ["Bath", "Soap"]]},
    {"item_id": 3, "asin": "A3"},  # no title, no categories
    {"item_id": 4, "asin": "A4", "title": "Caf&eacute; &quot;Noir&quot;", "idgenrec_textual_id": "cafe noir",
     "categories": [["Food &amp; Drink"]]},
    {"item_id": 5, "asin": "A5", "title": "   ", "categories": []},  # blank title counts as missing
]
SEQUENCES = ["1 1 2 3", "2 4 4 1 5", "3 2 3 4"]
DATAMAPS = {"id2user": {"1": "R1", "2": "R2", "3": "R3"},
            "id2item": {str(i): f"A{i}" for i in range(1, 6)},
            "user2id": {"R1": "1", "R2": "2", "R3": "3"}, "item2id": {f"A{i}": str(i) for i in range(1, 6)}}


def expect_error(folder: Path, message: str) -> None:
    with pytest.raises(DataError) as info:
        read_p5(folder)
    assert str(info.value) == message


def expect_error_prefix(folder: Path, prefix: str) -> str:
    with pytest.raises(DataError) as info:
        read_p5(folder)
    assert str(info.value).startswith(prefix), str(info.value)
    return str(info.value)


# ------------------------------------------------------------------------------------------ good folders


def test_small_folder_sequences(p5_writer):
    dataset = read_p5(p5_writer(ITEMS, SEQUENCES, DATAMAPS, name="tiny"))
    assert dataset.name == "tiny"
    assert dataset.num_users == 3 and dataset.num_items == 5 and dataset.num_interactions == 10
    assert [dataset.sequence(u).tolist() for u in range(3)] == [[1, 2, 3], [4, 4, 1, 5], [2, 3, 4]]
    assert dataset.user_ids == ("R1", "R2", "R3")  # raw reviewer ids through datamaps.json
    assert dataset.catalog.raw_ids == ("A1", "A2", "A3", "A4", "A5")


def test_small_folder_text(p5_writer):
    folder = p5_writer(ITEMS, SEQUENCES, DATAMAPS)
    dataset = read_p5(folder, name="renamed")
    assert dataset.name == "renamed"
    catalog = dataset.catalog
    assert catalog.titles == ("Shampoo & Conditioner", "Plain Soap", None, 'Café "Noir"', None)
    assert catalog.categories == ((("Beauty", "Hair Care"),), (("Beauty",), ("Bath", "Soap")), None,
                                  (("Food & Drink",),), ())
    assert catalog.extra == {"idgenrec_textual_id": ("shampoo set", None, None, "cafe noir", None)}
    assert catalog.brands is None and catalog.prices is None and catalog.descriptions is None
    assert dataset.report["source"] == "p5"
    assert dataset.report["path"] == str(folder)
    assert dataset.report["titles_html_unescaped"] == 2  # items 1 and 4
    assert dataset.report["items_without_title"] == 2  # item 3 (absent) and item 5 (blank)
    assert catalog.item(4) == {"item_id": 4, "raw_id": "A4", "title": 'Café "Noir"',
                               "categories": (("Food & Drink",),), "idgenrec_textual_id": "cafe noir"}
    coverage = catalog.text_coverage()
    assert coverage["title"] == 0.6 and coverage["categories"] == 0.6 and coverage["idgenrec_textual_id"] == 0.4


def test_optional_fields(p5_writer):
    items = [{"item_id": 1, "asin": "X", "brand": "Acme", "price": "12.5", "description": "Nice &lt;b&gt;"},
             {"item_id": 2, "asin": "Y", "price": None}]
    catalog = read_p5(p5_writer(items, ["7 1 2 1"])).catalog
    assert catalog.brands == ("Acme", None)
    assert catalog.prices == (12.5, None)
    assert catalog.descriptions == ("Nice <b>", None)
    assert catalog.titles is None


def test_without_datamaps_users_are_numbers(p5_writer):
    dataset = read_p5(p5_writer(ITEMS, ["10 1 2 3", "3 5", "7 4 4 4"]))
    assert dataset.user_ids == ("10", "3", "7")  # file order kept, ids as written
    assert dataset.lengths().tolist() == [3, 1, 3]
    assert dataset.report["items_without_title"] == 2


def test_no_trailing_newline_and_crlf(p5_writer):
    dataset = read_p5(p5_writer(ITEMS, "1 1 2 3\r\n2 4 5\r\n3 2 2"))
    assert [dataset.sequence(u).tolist() for u in range(3)] == [[1, 2, 3], [4, 5], [2, 2]]


def test_sources_entry_points(p5_writer):
    folder = p5_writer(ITEMS, SEQUENCES, DATAMAPS)
    assert detect_source(folder) == "p5"
    for dataset in (load_dataset("p5", folder), load_spec(str(folder)), load_spec(f"p5:{folder}")):
        assert dataset.items.tolist() == [1, 2, 3, 4, 4, 1, 5, 2, 3, 4]


# ------------------------------------------------------------------------------------ items.jsonl errors


def test_malformed_json_line(p5_writer):
    lines = [json.dumps(ITEMS[0]), '{"item_id": 2, "asin": "A2",}', json.dumps(ITEMS[2])]
    folder = p5_writer(lines, SEQUENCES)
    message = expect_error_prefix(folder, f"{folder / 'items.jsonl'}:2: malformed JSON (")
    assert "at column" in message


def test_truncated_last_json_line(p5_writer):
    folder = p5_writer([], SEQUENCES)
    text = json.dumps(ITEMS[0]) + "\n" + json.dumps(ITEMS[1]) + "\n" + '{"item_id": 3, "as'
    (folder / "items.jsonl").write_text(text)
    expect_error_prefix(folder, f"{folder / 'items.jsonl'}:3: malformed JSON (")


def test_json_not_an_object(p5_writer):
    folder = p5_writer([json.dumps(ITEMS[0]), "[2, \"A2\"]"], SEQUENCES)
    expect_error(folder, f"{folder / 'items.jsonl'}:2: expected a JSON object, got list")


def test_blank_line_in_items(p5_writer):
    folder = p5_writer([json.dumps(ITEMS[0]), "  ", json.dumps(ITEMS[1])], SEQUENCES)
    expect_error(folder, f"{folder / 'items.jsonl'}:2: empty line")


def test_item_id_out_of_order(p5_writer):
    items = [ITEMS[0], dict(ITEMS[2]), ITEMS[1]]  # ids 1, 3, 2
    folder = p5_writer(items, SEQUENCES)
    expect_error(folder, f"{folder / 'items.jsonl'}:2: item_id 3 out of order "
                         f"(items must be listed in id order 1..N; expected 2)")


def test_item_ids_must_start_at_one(p5_writer):
    folder = p5_writer([{"item_id": 0, "asin": "Z"}], ["1 1"])
    expect_error_prefix(folder, f"{folder / 'items.jsonl'}:1: item_id 0 out of order")


@pytest.mark.parametrize("missing", ["asin", "item_id"])
def test_missing_required_field(p5_writer, missing):
    second = dict(ITEMS[1])
    del second[missing]
    folder = p5_writer([ITEMS[0], second], SEQUENCES)
    expect_error(folder, f"{folder / 'items.jsonl'}:2: missing required field {missing!r}")


PRICE = "a number (or a numeric string) or null"


@pytest.mark.parametrize("field, value, expected", [
    ("item_id", True, "an integer"), ("item_id", 2.0, "an integer"), ("item_id", "2", "an integer"),
    ("asin", None, "a non-empty string"), ("asin", "", "a non-empty string"), ("asin", 7, "a non-empty string"),
    ("title", 5, "a string or null"), ("brand", ["B"], "a string or null"),
    ("description", {"text": "d"}, "a string or null"),
    ("price", "$3", PRICE), ("price", False, PRICE), ("price", [3], PRICE),
])
def test_wrong_field_type(p5_writer, field, value, expected):
    second = dict(ITEMS[1], **{field: value})
    folder = p5_writer([ITEMS[0], second], ["1 1 2"])
    expect_error(folder, f"{folder / 'items.jsonl'}:2: field {field!r} must be {expected}, got {value!r}")


def test_numeric_price_and_null_text_fields_are_accepted(p5_writer):
    items = [dict(ITEMS[0], price=3), dict(ITEMS[1], price=4.5, brand=None, description=None)]
    catalog = read_p5(p5_writer(items, ["1 1 2"])).catalog
    assert catalog.prices == (3.0, 4.5) and catalog.brands == (None, None)


def test_duplicate_asin(p5_writer):
    items = [ITEMS[0], ITEMS[1], {"item_id": 3, "asin": "A1"}]
    folder = p5_writer(items, ["1 1 2 3"])
    expect_error(folder, f"{folder / 'items.jsonl'}: duplicate raw item id 'A1' (items 1 and 3)")


def test_bad_categories(p5_writer):
    items = [ITEMS[0], {"item_id": 2, "asin": "A2", "categories": ["Beauty", "Soap"]}]
    folder = p5_writer(items, ["1 1 2"])
    expect_error(folder, f"{folder / 'items.jsonl'}:2: 'categories' must be a list of category paths "
                         f"(lists of strings)")


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_items_file(p5_writer, text):
    folder = p5_writer([], SEQUENCES)
    (folder / "items.jsonl").write_text(text)
    expect_error(folder, f"{folder / 'items.jsonl'}: file is empty")


@pytest.mark.parametrize("text", ["", "\n"])
def test_empty_sequences_file(p5_writer, text):
    folder = p5_writer(ITEMS, text)
    expect_error(folder, f"{folder / 'sequences.txt'}: file is empty")


@pytest.mark.parametrize("name", ["items.jsonl", "sequences.txt"])
def test_missing_file(p5_writer, name):
    folder = p5_writer(ITEMS, SEQUENCES)
    (folder / name).unlink()
    expect_error(folder, f"required file not found: {folder / name}")


def test_missing_folder(tmp_path):
    expect_error(tmp_path / "nope", f"P5 dataset folder not found: {tmp_path / 'nope'}")


# ---------------------------------------------------------------------------------- sequences.txt errors

CATALOGUE = "(expected an integer in 1..5, as listed in items.jsonl)"


@pytest.mark.parametrize("lines, line_no, token", [
    (["1 1 2", "2 3 4", "3 5 99 1"], 3, "99"),  # unknown id on the last line
    (["1 6 2", "2 3 4"], 1, "6"),  # on the first line
    (["1 1 2", "2 3 0", "3 1 1"], 2, "0"),  # padding id
    (["1 1 2", "2 3 -1", "3 1 1"], 2, "-1"),
    (["1 1 2", "2 3 x7", "3 1 1"], 2, "x7"),  # not an integer
    (["1 1 2 3 4 5 1 2 3", "2 1", "3 2", "4 1 2 3 4 5 2.0"], 4, "2.0"),
    (["1 1 2", "2 99999999999999999999 1"], 2, "99999999999999999999"),  # beyond int64
])
def test_unknown_item_in_sequences(p5_writer, lines, line_no, token):
    folder = p5_writer(ITEMS, lines)
    expect_error(folder, f"{folder / 'sequences.txt'}:{line_no}: item id {token!r} is not an item of the "
                         f"catalogue {CATALOGUE}")


def test_non_integer_user(p5_writer):
    folder = p5_writer(ITEMS, ["1 1 2", "u2 3 4"])
    expect_error(folder, f"{folder / 'sequences.txt'}:2: user id 'u2' is not an integer")


def test_duplicate_user(p5_writer):
    folder = p5_writer(ITEMS, ["1 1 2", "2 3 4", "1 5"])
    expect_error(folder, f"{folder / 'sequences.txt'}:3: duplicate user id 1 (first on line 1)")


def test_user_without_items(p5_writer):
    folder = p5_writer(ITEMS, ["1 1 2", "2 3 4", "3"])
    expect_error(folder, f"{folder / 'sequences.txt'}:3: expected 'user_id item_id ...', got user 3 with no items")


def test_blank_line_in_sequences(p5_writer):
    folder = p5_writer(ITEMS, ["1 1 2", "", "3 3 4"])
    expect_error(folder, f"{folder / 'sequences.txt'}:2: expected 'user_id item_id ...', got an empty line")


# ----------------------------------------------------------------------------------- datamaps.json errors


def test_datamaps_item_mismatch(p5_writer):
    datamaps = json.loads(json.dumps(DATAMAPS))
    datamaps["id2item"]["2"] = "ZZ"
    folder = p5_writer(ITEMS, SEQUENCES, datamaps)
    expect_error(folder, f"{folder / 'datamaps.json'}: id2item[2] is 'ZZ' but items.jsonl gives asin 'A2'")


def test_datamaps_item_missing(p5_writer):
    datamaps = json.loads(json.dumps(DATAMAPS))
    del datamaps["id2item"]["5"]
    folder = p5_writer(ITEMS, SEQUENCES, datamaps)
    expect_error(folder, f"{folder / 'datamaps.json'}: id2item[5] is None but items.jsonl gives asin 'A5'")


def test_datamaps_user_missing(p5_writer):
    datamaps = json.loads(json.dumps(DATAMAPS))
    del datamaps["id2user"]["2"]
    folder = p5_writer(ITEMS, SEQUENCES, datamaps)
    expect_error(folder, f"{folder / 'datamaps.json'}: id2user has no entry for user id 2 (1 of 3 users missing)")


def test_datamaps_user_missing_late_in_file(p5_writer):
    """Every user must be mapped, not only the first few: otherwise user ids silently mix reviewer ids with
    bare numbers."""
    lines = [f"{u} 1 2 3" for u in range(1, 9)]
    datamaps = {"id2user": {str(u): f"R{u}" for u in range(1, 8)},  # user 8 (line 8) is missing
                "id2item": DATAMAPS["id2item"]}
    folder = p5_writer(ITEMS, lines, datamaps)
    expect_error(folder, f"{folder / 'datamaps.json'}: id2user has no entry for user id 8 (1 of 8 users missing)")


@pytest.mark.parametrize("datamaps, message", [
    ("[1, 2]", "expected a JSON object (with 'id2item', ...), got list"),
    ('{"id2item": ["A1"]}', "'id2item' must be an object mapping item ids to ASINs, got list"),
])
def test_datamaps_wrong_shape(p5_writer, datamaps, message):
    folder = p5_writer(ITEMS, SEQUENCES, datamaps)
    expect_error(folder, f"{folder / 'datamaps.json'}: {message}")


def test_datamaps_malformed(p5_writer):
    folder = p5_writer(ITEMS, SEQUENCES, '{"id2user": {"1": "R1"},\n "id2item": }')
    expect_error_prefix(folder, f"{folder / 'datamaps.json'}:2: malformed JSON (")


# -------------------------------------------------------------------------------------------- real data


def _count_file(path: Path) -> tuple[int, int]:
    lines = path.read_text().split("\n")
    lines = [line for line in lines if line]
    return len(lines), sum(len(line.split()) - 1 for line in lines)


def test_real_beauty(beauty, beauty_dir):
    assert beauty.name == "amazon-beauty-2014"
    assert (beauty.num_users, beauty.num_items, beauty.num_interactions) == (22_363, 12_101, 198_502)
    assert _count_file(beauty_dir / "sequences.txt") == (22_363, 198_502)  # tokens - lines
    assert beauty.sequence(0).tolist() == [1, 2, 3, 4, 5]
    assert beauty.catalog.raw_ids[0] == "B004756YJA"
    datamaps = json.loads((beauty_dir / "datamaps.json").read_text())
    assert beauty.user_ids[0] == datamaps["id2user"]["1"]
    assert beauty.lengths().min() >= 5  # 5-core
    coverage = beauty.catalog.text_coverage()
    assert coverage["title"] == 1.0 and coverage["categories"] == 1.0
    assert beauty.report["items_without_title"] == 0
    # No raw entity survives; the reported count equals an independent count of titles holding an entity.
    entity = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+\d*);")
    raw_titles = [json.loads(line).get("title") for line in (beauty_dir / "items.jsonl").open()]
    assert beauty.report["titles_html_unescaped"] == sum(bool(t and entity.search(t)) for t in raw_titles)
    assert beauty.report["titles_html_unescaped"] > 1000
    assert not any("&amp;" in t or "&quot;" in t for t in beauty.catalog.titles)
    assert beauty.catalog.titles[0] == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"


def test_real_beauty_matches_raw_sequences(beauty, beauty_dir):
    """Mapping every row back through user_ids / raw_ids reproduces sequences_raw.txt exactly."""
    raw_ids = np.array(("",) + beauty.catalog.raw_ids, dtype=object)
    lines = (beauty_dir / "sequences_raw.txt").read_text().split("\n")
    lines = [line for line in lines if line]
    assert len(lines) == beauty.num_users
    for user in (0, 1, 2, 1000, beauty.num_users - 1):
        expected = lines[user].split()
        assert [beauty.user_ids[user], *raw_ids[beauty.sequence(user)]] == expected
    rebuilt = [" ".join([beauty.user_ids[u], *raw_ids[beauty.sequence(u)]]) for u in range(beauty.num_users)]
    assert rebuilt == [line.strip() for line in lines]


def test_real_sports(sports_dir):
    sports = read_p5(sports_dir)
    assert (sports.num_users, sports.num_items, sports.num_interactions) == (35_598, 18_357, 296_337)
    assert _count_file(sports_dir / "sequences.txt") == (35_598, 296_337)
    assert sports.catalog.titles is None
    assert sports.report["items_without_title"] == 18_357
    assert sports.catalog.text_coverage()["idgenrec_textual_id"] == 1.0
    assert sports.catalog.raw_ids[0] == "1881509818"


def test_real_unescape_is_html_unescape_to_fixed_point(beauty, beauty_dir):
    def unescape(text):
        while html.unescape(text) != text:
            text = html.unescape(text)
        return text

    raw_titles = [json.loads(line).get("title") for line in (beauty_dir / "items.jsonl").open()]
    assert list(beauty.catalog.titles) == [unescape(t).strip() or None for t in raw_titles]
    # Two Beauty titles are escaped twice (&amp;#8482): no entity may survive.
    assert sum("&amp;#8482" in t for t in raw_titles) == 2
    assert not any(re.search(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", t, re.I) for t in beauty.catalog.titles)
