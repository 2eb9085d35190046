"""TFDS ArrayRecord builders: build from an injected Dataset, read back with tfds/grain, no TensorFlow, no network."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxrec.data import tfds_builders as tb
from jaxrec.data.types import Catalog, DataError, Dataset


def small_dataset(brands: bool = True) -> Dataset:
    catalog = Catalog(
        raw_ids=("B001", "B002", "B003", "B004", "B005"),
        titles=("Lipstick", None, "", "Crème «brûlée»\nline 2", "Soap"),
        categories=((("Beauty", "Makeup"), ("Gifts",)), None, (), (("Beauty",),), (("Bath", "Soap & Co"),)),
        brands=("Acme", None, "", "Zoë", "Acme") if brands else None,
        prices=(12.99, None, 0.0, 1e-7, 123456.78),
        descriptions=(None, "desc", "", "multi\nline", "x" * 1000),
        extra={"textual_id": ("lip red", None, "", "crème", "soap bar")},
    )
    sequences = [[1, 2, 3], [5], [], [4, 4, 2, 1, 5, 3]]
    return Dataset.from_sequences("tiny", catalog, ["u0", "ü1", "u 2", "A3"], sequences,
                                  report={"dropped_users": 2, "note": "kept"})


class FakeLoader:
    """Stands in for `jaxrec.data.sources.load_dataset`; records how it was called."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.calls: list[tuple[str, str | None, dict[str, Any]]] = []

    def __call__(self, source: str, path: str | None = None, **options: Any) -> Dataset:
        self.calls.append((source, path, options))
        return self.dataset


def assert_same_dataset(got: Dataset, want: Dataset) -> None:
    assert got.name == want.name
    assert got.user_ids == want.user_ids
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.items, want.items)
    assert got.catalog == want.catalog
    assert got.report == want.report


def assert_item_record(record: dict[str, Any], catalog: Catalog, item_id: int) -> None:
    text = lambda v: None if v is None else v.encode()  # noqa: E731
    assert record["item_id"] == item_id
    assert record["raw_id"] == catalog.raw_ids[item_id - 1].encode()
    assert record["title"] == text(catalog.titles[item_id - 1])
    assert record["description"] == text(catalog.descriptions[item_id - 1])
    assert record["brand"] == (None if catalog.brands is None else text(catalog.brands[item_id - 1]))
    price = catalog.prices[item_id - 1]
    assert math.isnan(record["price"]) if price is None else float(record["price"]) == price
    categories = catalog.categories[item_id - 1]
    assert record["categories"] == (None if categories is None else json.dumps([list(p) for p in categories]).encode())
    known = {key: values[item_id - 1] for key, values in catalog.extra.items() if values[item_id - 1] is not None}
    assert json.loads(record["extra"]) == known
    assert record["user_index"] is None and record["user_id"] is None and len(record["item_ids"]) == 0


@pytest.fixture
def built(tmp_path: Path) -> tuple[dict[str, Any], Dataset, FakeLoader]:
    dataset = small_dataset()
    loader = FakeLoader(dataset)
    sources = tfds.data_source("jaxrec/synthetic", data_dir=str(tmp_path), builder_kwargs={"loader": loader})
    return sources, dataset, loader


def test_round_trip_through_tfds_data_source(built) -> None:
    sources, dataset, loader = built
    assert loader.calls == [("synthetic", None, {})]
    users, items = sources["users"], sources["items"]
    assert len(users) == dataset.num_users and len(items) == dataset.num_items
    for user in range(dataset.num_users):
        record = users[user]
        assert record["user_index"] == user
        assert record["user_id"] == dataset.user_ids[user].encode()
        assert record["item_ids"].dtype == np.int32
        np.testing.assert_array_equal(record["item_ids"], dataset.sequence(user))
        assert record["item_id"] is None and math.isnan(record["price"])
        assert set(tb.user_view(record)) == set(tb.USER_KEYS)
    for item_id in range(1, dataset.num_items + 1):
        assert_item_record(items[item_id - 1], dataset.catalog, item_id)
    assert_same_dataset(tb.to_dataset(users, items), dataset)


def test_to_dataset_without_metadata_accepts_any_order(built) -> None:
    sources, dataset, _ = built
    users, items = list(sources["users"])[::-1], list(sources["items"])[::-1]
    rebuilt = tb.to_dataset(users, items, name="tiny")  # plain lists: no metadata.json, so no report
    assert rebuilt.report == {}
    assert_same_dataset(rebuilt, dataclasses.replace(dataset, report={}))
    with pytest.raises(DataError, match="user indices"):
        tb.to_dataset(users[:-1], items)  # user 0 missing


def test_missing_catalog_field_stays_missing(tmp_path: Path) -> None:
    dataset = small_dataset(brands=False)
    got = tb.load("synthetic", tmp_path, loader=FakeLoader(dataset))
    assert got.catalog.brands is None
    assert_same_dataset(got, dataset)


def test_grain_random_access(built) -> None:
    sources, dataset, _ = built
    users = grain.MapDataset.source(sources["users"])
    assert len(users) == dataset.num_users
    order = list(range(dataset.num_users))
    random.Random(0).shuffle(order)
    for user in order:
        np.testing.assert_array_equal(users[user]["item_ids"], dataset.sequence(user))
    items = grain.MapDataset.source(sources["items"]).map(tb.item_view)
    assert list(items[3]) == list(tb.ITEM_KEYS) and items[3]["item_id"] == 4


def test_manual_dir_config_reads_files_with_loader(tmp_path: Path) -> None:
    manual = tmp_path / "manual" / "beauty_p5"  # the per-config subfolder is also accepted
    manual.mkdir(parents=True)
    for name in tb.P5_FILES:
        (manual / name).write_text("")
    loader = FakeLoader(small_dataset())
    sources = tfds.data_source(
        "jaxrec/beauty_p5", data_dir=str(tmp_path / "data"), builder_kwargs={"loader": loader},
        download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=str(manual.parent))})
    assert loader.calls == [("p5", str(manual), {})]
    assert_same_dataset(tb.to_dataset(sources["users"], sources["items"]), small_dataset())


def test_prepared_data_reads_back_without_the_builder_class(tmp_path: Path) -> None:
    path = tb.build("synthetic", tmp_path, loader=FakeLoader(small_dataset()))
    sources = tfds.builder_from_directory(str(path)).as_data_source()
    assert_same_dataset(tb.to_dataset(sources["users"], sources["items"]), small_dataset())
    assert tb.build("synthetic", tmp_path, loader=FakeLoader(small_dataset())) == path  # already built: no-op


def test_missing_manual_dir_names_expected_files(tmp_path: Path) -> None:
    loader = FakeLoader(small_dataset())
    with pytest.raises(DataError, match=r"reviews_Beauty_5\.json\.gz, meta_Beauty\.json\.gz"):
        tb.build("amazon2014_beauty", tmp_path / "data", tmp_path / "nowhere", loader=loader)
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "reviews_Beauty_5.json.gz").write_text("")
    with pytest.raises(DataError, match=r"missing meta_Beauty\.json\.gz"):
        tb.build("amazon2014_beauty", tmp_path / "data", manual, loader=loader)
    assert loader.calls == []


def test_configs() -> None:
    names = {config.name for config in tb.Jaxrec.builder_configs.values()}
    assert {"beauty_p5", "sports_p5", "amazon2014_beauty", "amazon2014_sports_and_outdoors", "movielens_1m",
            "movielens_100k", "synthetic"} <= names
    assert tb.amazon2014_config("Toys_and_Games").options == {"category": "Toys_and_Games"}
    assert tb.movielens_config("100k").required_files == ("u.data", "u.item")


def test_custom_config_and_no_tensorflow(tmp_path: Path) -> None:
    config = tb.synthetic_config("synthetic_tiny", num_users=4)
    loader = FakeLoader(small_dataset())
    assert_same_dataset(tb.load(config, tmp_path, loader=loader), small_dataset())
    assert loader.calls[0][2]["num_users"] == 4
    assert "tensorflow" not in sys.modules


def test_default_loader_is_jaxrec_load_dataset(tmp_path: Path) -> None:
    from jaxrec.data.sources import load_dataset

    config = tb.synthetic_config("synthetic_small", num_users=60, num_items=80, seed=3)
    assert_same_dataset(tb.load(config, tmp_path), load_dataset("synthetic", num_users=60, num_items=80, seed=3))
