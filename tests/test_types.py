"""Catalog / Dataset: validation messages, accessors, stats() and text_coverage() on hand-made data."""

from __future__ import annotations

import re

import numpy as np
import pytest

from jaxrec.data.types import INVALID_ITEM, PAD_ITEM, Catalog, DataError, Dataset


def hand_catalog() -> Catalog:
    return Catalog(
        raw_ids=("A", "B", "C", "D", "E"),
        titles=("t1", None, "", "t4", "t5"),
        categories=((("x", "y"),), None, (), (("z",),), None),
        extra={"tid": ("a", "", None, "d", "e")},
    )


def hand_dataset() -> Dataset:
    # lengths 3, 2, 4, 1 -> 10 interactions; item 4 never occurs.
    return Dataset.from_sequences("hand", hand_catalog(), ["u0", "u1", "u2", "u3"],
                                  [[1, 2, 3], [2, 2], [5, 1, 2, 3], [1]], report={"note": "x"})


def test_id_conventions():
    assert PAD_ITEM == 0
    assert INVALID_ITEM == -1


# ----------------------------------------------------------------------------------------------- Catalog


def test_catalog_accessors():
    catalog = hand_catalog()
    assert catalog.num_items == 5
    np.testing.assert_array_equal(catalog.item_ids(), [1, 2, 3, 4, 5])
    assert catalog.item_ids().dtype == np.int32
    assert catalog.title(1) == "t1"
    assert catalog.title(2) is None
    assert catalog.item(1) == {"item_id": 1, "raw_id": "A", "title": "t1", "categories": (("x", "y"),),
                               "tid": "a"}
    # Missing fields are omitted (None), empty strings are kept as given.
    assert catalog.item(2) == {"item_id": 2, "raw_id": "B", "tid": ""}
    for bad in (0, 6, -1):
        with pytest.raises(KeyError, match=re.escape(f"item id {bad} outside 1..5")):
            catalog.title(bad)


def test_catalog_duplicate_raw_ids():
    with pytest.raises(DataError, match=re.escape("duplicate raw item id 'B' (items 2 and 4)")):
        Catalog(raw_ids=("A", "B", "C", "B"))


@pytest.mark.parametrize("field", ["titles", "categories", "brands", "prices", "descriptions"])
def test_catalog_field_length_mismatch(field):
    with pytest.raises(DataError, match=re.escape(f"Catalog.{field} has 2 entries but there are 3 items")):
        Catalog(raw_ids=("A", "B", "C"), **{field: (None, None)})


def test_catalog_extra_length_mismatch():
    with pytest.raises(DataError, match=re.escape("Catalog.extra['tid'] has 4 entries but there are 3 items")):
        Catalog(raw_ids=("A", "B", "C"), extra={"tid": ("a", "b", "c", "d")})


def test_text_coverage():
    coverage = hand_catalog().text_coverage()
    # title: t1, t4, t5 (None and "" do not count); categories: items 1 and 4 (None and () do not count).
    assert coverage == {"title": 0.6, "categories": 0.4, "brand": 0.0, "price": 0.0, "description": 0.0,
                        "tid": 0.6}


def test_text_coverage_all_fields():
    catalog = Catalog(raw_ids=("A", "B", "C", "D"), titles=("a", "b", "c", "d"), brands=("x", None, "", "y"),
                      prices=(1.0, None, 0.0, 2.5), descriptions=(None, None, None, "d"))
    coverage = catalog.text_coverage()
    assert coverage["title"] == 1.0
    assert coverage["brand"] == 0.5
    assert coverage["price"] == 0.75  # 0.0 is a known price
    assert coverage["description"] == 0.25
    assert coverage["categories"] == 0.0


# ----------------------------------------------------------------------------------------------- Dataset


def test_from_sequences_csr_layout():
    dataset = hand_dataset()
    assert dataset.num_users == 4
    assert dataset.num_items == 5
    assert dataset.num_interactions == 10
    assert dataset.offsets.dtype == np.int64
    assert dataset.items.dtype == np.int32
    np.testing.assert_array_equal(dataset.offsets, [0, 3, 5, 9, 10])
    np.testing.assert_array_equal(dataset.items, [1, 2, 3, 2, 2, 5, 1, 2, 3, 1])
    np.testing.assert_array_equal(dataset.lengths(), [3, 2, 4, 1])
    np.testing.assert_array_equal(dataset.sequence(2), [5, 1, 2, 3])
    np.testing.assert_array_equal(dataset.sequence(3), [1])
    assert dataset.user_ids == ("u0", "u1", "u2", "u3")


def test_constructor_converts_dtypes():
    dataset = Dataset("d", Catalog(("A", "B")), ("u",), [0, 2], [2, 1])
    assert dataset.offsets.dtype == np.int64 and dataset.items.dtype == np.int32


def test_stats_exact():
    stats = hand_dataset().stats()
    assert stats["name"] == "hand"
    assert stats["users"] == 4
    assert stats["items"] == 5
    assert stats["interactions"] == 10
    assert stats["density"] == pytest.approx(10 / 20)
    # Lengths [1, 2, 3, 4]: median 2.5; linear-interpolated p90 = 3 + 0.7 = 3.7, p99 = 3.97.
    assert stats["sequence_length"] == {"min": 1, "max": 4, "mean": 2.5, "p50": 2.5,
                                        "p90": pytest.approx(3.7), "p99": pytest.approx(3.97)}
    assert stats["items_never_interacted"] == 1  # item 4
    assert stats["text_coverage"] == hand_catalog().text_coverage()
    assert stats["report"] == {"note": "x"}


def test_stats_empty_dataset():
    dataset = Dataset.from_sequences("empty", Catalog(("A", "B")), [], [])
    stats = dataset.stats()
    assert stats["users"] == 0 and stats["interactions"] == 0 and stats["density"] == 0.0
    assert stats["sequence_length"]["min"] == 0 and stats["sequence_length"]["max"] == 0
    assert stats["items_never_interacted"] == 2


@pytest.mark.parametrize("bad_item", [0, 6, -3])
def test_out_of_range_item_names_user(bad_item):
    # Users with empty sequences before the culprit must not confuse the user lookup.
    with pytest.raises(DataError, match=re.escape(
            f"dataset 'd': user 'carol' has item id {bad_item} outside the catalogue 1..5")):
        Dataset.from_sequences("d", hand_catalog(), ["alice", "bob", "carol", "dave"],
                               [[], [1, 5], [2, bad_item], [9]])


def test_out_of_range_item_first_user_reported():
    with pytest.raises(DataError, match=re.escape("user 'alice' has item id 7")):
        Dataset.from_sequences("d", hand_catalog(), ["alice", "bob"], [[7], [8]])


def test_offsets_wrong_length():
    with pytest.raises(DataError, match=re.escape("offsets must have num_users + 1 = 3 entries, got shape (2,)")):
        Dataset("d", hand_catalog(), ("a", "b"), np.array([0, 2]), np.array([1, 2]))


def test_offsets_two_dimensional():
    with pytest.raises(DataError, match="offsets must have num_users"):
        Dataset("d", hand_catalog(), ("a",), np.array([[0, 2]]), np.array([1, 2]))


@pytest.mark.parametrize("offsets", [[1, 2, 3], [0, 2, 4], [0, 4, 3], [0, 1, 2]])
def test_offsets_not_a_csr_index(offsets):
    # Start not 0; end beyond the items; decreasing; end before the last item.
    with pytest.raises(DataError, match=re.escape("dataset 'd': offsets are not a valid CSR index over 3 items")):
        Dataset("d", hand_catalog(), ("a", "b"), np.array(offsets), np.array([1, 2, 3]))
