"""Collision digit, SIDTable artifact, diagnostics and item-text templates."""

import json
import math

import numpy as np
import pytest

from jaxrec.data.types import Catalog, DataError
from jaxrec.sid.collisions import collision_digits, collision_groups, with_collision_digit
from jaxrec.sid.diagnostics import level_usage, semantic_coherence, sid_diagnostics
from jaxrec.sid.quantizers import Quantization
from jaxrec.sid.table import SIDTable, SIDTableError
from jaxrec.text.item_text import item_texts


def brute_force_digits(codes):
    seen: dict[tuple, int] = {}
    digits = []
    for row in map(tuple, codes):
        digits.append(seen.get(row, 0))
        seen[row] = seen.get(row, 0) + 1
    return digits


def test_collision_digits_match_brute_force():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(500, 3))
    assert collision_digits(codes).tolist() == brute_force_digits(codes)
    final = with_collision_digit(codes)
    assert len(np.unique(final, axis=0)) == 500
    groups, sizes = collision_groups(codes)
    assert sizes.sum() == 500 and sizes.max() == collision_digits(codes).max() + 1
    assert len(sizes) == len({tuple(r) for r in codes})


def make_table(codes=None):
    codes = np.array([[0, 1, 0], [0, 1, 1], [2, 0, 0], [1, 1, 0]]) if codes is None else codes
    return SIDTable.create(codes, {"quantizer": {"method": "rq_kmeans", "levels": 2}})


def test_sid_table_maps_both_ways(tmp_path):
    table = make_table()
    assert table.level_sizes == (3, 2, 2)
    assert table.sid(2) == (0, 1, 1)
    queries = np.array([[[0, 1, 1], [1, 1, 0]], [[2, 0, 1], [5, 0, 0]]])
    assert table.items_for(queries).tolist() == [[2, 4], [-1, -1]]
    assert table.items_for(table.codes).tolist() == [1, 2, 3, 4]
    with pytest.raises(KeyError):
        table.sid(5)
    loaded = SIDTable.load(table.save(tmp_path / "t.npz"), expect={"quantizer": {"method": "rq_kmeans", "levels": 2}})
    np.testing.assert_array_equal(loaded.codes, table.codes)
    assert loaded.header == table.header


def test_sid_table_rejects_duplicates_and_bad_codes():
    with pytest.raises(SIDTableError, match="not unique"):
        make_table(np.array([[0, 1, 0], [0, 1, 0]]))
    with pytest.raises(SIDTableError, match="levels \\+ 1"):
        SIDTable.create(np.array([1, 2, 3]), {})


def test_sid_table_detects_corruption_and_mismatch(tmp_path):
    path = make_table().save(tmp_path / "t.npz")
    with pytest.raises(SIDTableError, match="expected"):
        SIDTable.load(path, expect={"quantizer": {"method": "rq_vae", "levels": 2}})
    with np.load(path) as archive:
        codes, header = archive["codes"].copy(), str(archive["header"])
    codes[0, 0] = 1  # an edit that keeps the SIDs unique: only the hash can catch it
    np.savez(tmp_path / "edited.npz", codes=codes, header=np.array(header))
    with pytest.raises(SIDTableError, match="content hash"):
        SIDTable.load(tmp_path / "edited.npz")
    bad_header = json.loads(header)
    bad_header["format"] = "something/else"
    np.savez(tmp_path / "format.npz", codes=codes, header=np.array(json.dumps(bad_header)))
    with pytest.raises(SIDTableError, match="header format"):
        SIDTable.load(tmp_path / "format.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(SIDTableError, match="not a readable SID table"):
        SIDTable.load(tmp_path / "garbage.npz")


def test_level_usage_and_perplexity():
    codes = np.array([[0, 0], [1, 0], [2, 0], [3, 0]])
    usage = level_usage(codes, 8)
    assert usage[0]["usage"] == 0.5 and usage[0]["codes_used"] == 4
    assert math.isclose(usage[0]["perplexity"], 4.0) and math.isclose(usage[1]["perplexity"], 1.0)


def test_semantic_coherence_counts_pairs():
    # Prefix groups {0,1,2} and {3,4}; categories a,a,b | b,b; item 5 has no category.
    codes = np.array([[0, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 1]])
    categories = np.array([0, 0, 1, 1, 1, -1])
    first, second = semantic_coherence(codes, categories)
    # k=1: pairs sharing prefix = 3 + 1 = 4; same category among them: (0,1) and (3,4) = 2.
    assert first["pairs_sharing_prefix"] == 4 and first["same_leaf_category"] == 0.5
    # Random pairs over the 5 categorised items: a:2 -> 1 pair, b:3 -> 3 pairs, of 10.
    assert first["random_pair_baseline"] == 0.4 and math.isclose(first["lift"], 1.25)
    # k=2: groups {0}, {1,2}, {3,4}: pairs (1,2) differ, (3,4) agree.
    assert second["pairs_sharing_prefix"] == 2 and second["same_leaf_category"] == 0.5


def test_sid_diagnostics_report():
    codes = np.array([[0, 0], [0, 0], [0, 0], [1, 1], [2, 0]])
    q = Quantization(codes=codes, codebooks=np.zeros((2, 4, 3)), level_errors=[0.5, 0.25], info={"seconds": 1.0})
    catalog = Catalog(raw_ids=tuple("abcde"), categories=((("X", "y"),), (("X", "y"),), (("X", "z"),), None, None))
    report = sid_diagnostics(q, with_collision_digit(codes), 4, catalog)
    assert report["unique_before_digit"] == 0.4
    assert report["largest_collision_group"] == 3 and report["items_in_collisions"] == 3
    assert report["collision_group_sizes"] == {"1": 2, "3": 1}
    assert report["final_sids_unique"] is True
    assert report["levels"][0]["usage"] == 0.75
    assert report["items_without_category"] == 2
    assert report["semantic_coherence"][0]["same_leaf_category"] == pytest.approx(1 / 3)


def test_item_texts_template_omits_missing_fields():
    catalog = Catalog(raw_ids=("A1", "B2", "C3"), titles=("Rose &amp; Oud", None, "Soap"),
                      brands=("Acme", None, ""), prices=(12.5, None, 3.0),
                      categories=((("Beauty", "Fragrance"), ("Beauty", "Fragrance")), None, (("Bath",),)))
    texts, report = item_texts(catalog, ("{title}", "Brand: {brand}", "Categories: {categories}", "Price: {price}"),
                               empty_text="raw_id")
    assert texts[0] == "Rose &amp; Oud. Brand: Acme. Categories: Beauty > Fragrance. Price: 12.50"
    assert texts[1] == "item B2"
    assert texts[2] == "Soap. Categories: Bath. Price: 3.00"
    assert report["empty_text_fallbacks"] == 1 and report["items_with_brand"] == 1
    with pytest.raises(DataError, match=r"1 of 3 items have no text .*\(item ids \[2\]\)"):
        item_texts(catalog, ("{title}",))
    with pytest.raises(DataError, match="unknown field 'colour'"):
        item_texts(catalog, ("{colour}",))
    with pytest.raises(DataError, match="names no field"):
        item_texts(catalog, ("Title:",))
    with pytest.raises(DataError, match="empty_text must be one of"):
        item_texts(catalog, ("{title}",), empty_text="skip")
