"""TFDS builders that turn jaxrec sources into ArrayRecord datasets, built and read without TensorFlow.

One builder, registered under the name ``"jaxrec"`` as a side effect of ``import jaxrec.data.tfds_builders`` (TFDS
registers a `GeneratorBasedBuilder` subclass when the class is defined), with one `BuilderConfig` per source:
``beauty_p5``, ``sports_p5``, ``toys_p5``, ``amazon2014_<category>`` (raw 5-core reviews + metadata; see
`amazon2014_config` for other categories), ``movielens_1m``, ``movielens_100k``, ``synthetic``. Each config reads the
user-downloaded files in ``manual_dir`` (or ``manual_dir/<config name>``) with the jaxrec readers
(`jaxrec.data.sources.load_dataset`), so TFDS and jaxrec parse raw data with the same code.

Two splits, written in generation order (``disable_shuffling``), so record ``i`` of ``users`` is user ``i`` and
record ``i`` of ``items`` is item ``i + 1``: index-based random access (grain) is meaningful.
  * ``users``: ``user_index`` int32, ``user_id`` Text, ``item_ids`` int32 array (chronological);
  * ``items``: ``item_id`` int32, ``raw_id`` Text, ``title``/``brand``/``description`` Text, ``categories`` Text
    holding a JSON list of category paths, ``price`` float64 (NaN = unknown), ``extra`` Text holding a JSON object of
    the item's source-specific `Catalog.extra` values (None when the catalogue has none).
TFDS has one feature spec per dataset, not per split, so both splits share the union of these keys: a user record
has the item keys set to None (``price`` NaN), an item record has the user keys None and an empty ``item_ids``.
`user_view` / `item_view` keep only a split's own keys; `to_dataset` rebuilds a jaxrec `Dataset` from both splits.

Feature types, all checked to encode and decode with TFDS 4.9.10 and no TensorFlow installed (TFDS then serialises
with its bundled ``tf_example_pb2`` protos and decodes with the NumPy ``ExampleParserNp``):
  * ``Tensor(shape=(None,), int32)`` for ``item_ids``: it decodes to one NumPy array (a ``Sequence(Scalar)`` decodes
    to a list of NumPy scalars). It cannot be ``optional`` (TFDS fails on optional tensors of unknown shape).
  * Optional ``Text`` / ``Scalar`` for everything else: None is simply left out of the record, so an unknown title
    (None) and an empty one ("") stay distinct. Text decodes to UTF-8 ``bytes``.
  * ``price`` as a float64 ``Tensor`` with ``Encoding.BYTES``: a plain float feature is a tf.Example FloatList, i.e.
    float32 (12.99 would come back as 12.989999771118164); raw bytes keep it exact. Byte-encoded tensors cannot be
    optional in the NumPy decoder, hence NaN for unknown.
  * ``categories`` / ``extra`` as JSON strings: nested ragged text would need TFDS's ragged flattening; JSON is one
    flat field, exact, and keeps "no categories" (``[]``) apart from unknown (None).
Whether a catalogue field exists at all (a `Catalog` field may be None as a whole), the `extra` keys, the dataset name
and the reader's report go to the dataset's ``metadata.json`` (`tfds.core.MetadataDict`), which `to_dataset` reads back.

The leave-one-out split is not baked in: jaxrec computes it from the full sequences, so the evaluation protocol (and
its edge cases, e.g. very short sequences) has one source of truth instead of a second copy frozen into files.

Reading: ``tfds.data_source("jaxrec/<config>", data_dir=...)`` (the name must be a string; it builds when needed:
pass ``builder_kwargs={"loader": ...}`` to replace the reader and ``download_and_prepare_kwargs={"download_config":
tfds.download.DownloadConfig(manual_dir=...)}``). A prepared dataset can be read without importing this module, via
``tfds.builder_from_directory(path).as_data_source()`` or ``tfds.data_source(..., download=False)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from jaxrec.data.types import Catalog, DataError, Dataset

Loader = Callable[..., Dataset]  # load_dataset(source, path, **options) -> Dataset

BUILDER_NAME = "jaxrec"
USERS_SPLIT = "users"
ITEMS_SPLIT = "items"
USER_KEYS = ("user_index", "user_id", "item_ids")
ITEM_KEYS = ("item_id", "raw_id", "title", "categories", "brand", "price", "description", "extra")
# Record key -> Catalog attribute, for the optional catalogue fields.
CATALOG_FIELDS = {"title": "titles", "categories": "categories", "brand": "brands", "price": "prices",
                  "description": "descriptions"}

P5_FILES = ("sequences.txt", "items.jsonl")  # datamaps.json (raw user ids) is optional
MOVIELENS_FILES = {"1m": ("ratings.dat", "movies.dat"), "100k": ("u.data", "u.item")}
AMAZON2014_CATEGORIES = ("Beauty", "Sports_and_Outdoors", "Toys_and_Games")


# ----------------------------------------------------------------------------------------------------------- configs
@dataclasses.dataclass(eq=False)
class JaxrecConfig(tfds.core.BuilderConfig):
    """A jaxrec source: ``load_dataset(source, manual_dir, **options)``; `required_files` must be in the manual dir.

    The config name keys the files on disk, so different `options` need a different name.
    """

    source: str = "synthetic"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    required_files: tuple[str, ...] = ()


def p5_config(dataset: str) -> JaxrecConfig:
    """P5 preprocessed data (e.g. ``beauty``): a folder with `P5_FILES` (and optionally datamaps.json)."""
    return JaxrecConfig(name=f"{dataset}_p5", source="p5", required_files=P5_FILES,
                        description=f"P5 preprocessed Amazon {dataset}.")


def amazon2014_config(category: str) -> JaxrecConfig:
    """Raw Amazon 2014 5-core reviews plus metadata for one category, e.g. ``Sports_and_Outdoors``."""
    files = (f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz")
    return JaxrecConfig(name=f"amazon2014_{category.lower()}", source="amazon2014", options={"category": category},
                        required_files=files, description=f"Amazon 2014 5-core {category}, from the raw files.")


def movielens_config(variant: str) -> JaxrecConfig:
    """MovieLens ``1m`` or ``100k``: the extracted ``ml-<variant>`` folder."""
    return JaxrecConfig(name=f"movielens_{variant}", source="movielens", required_files=MOVIELENS_FILES[variant],
                        description=f"MovieLens {variant} (ml-{variant} folder).")


def synthetic_config(name: str = "synthetic", **options: Any) -> JaxrecConfig:
    """Synthetic data, no manual dir; `options` are `jaxrec.data.synthetic.SyntheticConfig` fields (default: its
    defaults, so bump `Jaxrec.VERSION` if those change)."""
    return JaxrecConfig(name=name, source="synthetic", options=dict(options),
                        description=f"jaxrec synthetic data {options or '(defaults)'}.")


DEFAULT_CONFIGS = (
    p5_config("beauty"), p5_config("sports"), p5_config("toys"),
    *(amazon2014_config(category) for category in AMAZON2014_CATEGORIES),
    movielens_config("1m"), movielens_config("100k"),
    synthetic_config(),
)


def _manual_instructions(configs: Iterable[JaxrecConfig]) -> str:
    lines = ["Download the raw files yourself; put them in the manual dir or in manual_dir/<config name>:"]
    lines += [f"  {config.name}: {', '.join(config.required_files)}" for config in configs if config.required_files]
    return "\n".join(lines)


def _default_loader() -> Loader:
    from jaxrec.data.sources import load_dataset  # lazy: the readers are only needed when building

    return load_dataset


# ----------------------------------------------------------------------------------------------------------- builder
def _features() -> dict[str, tfds.features.FeatureConnector]:
    text = lambda: tfds.features.Text(optional=True)  # noqa: E731
    return {
        "user_index": tfds.features.Scalar(np.int32, optional=True),
        "user_id": text(),
        "item_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "item_id": tfds.features.Scalar(np.int32, optional=True),
        "raw_id": text(),
        "title": text(),
        "categories": text(),
        "brand": text(),
        "price": tfds.features.Tensor(shape=(), dtype=np.float64, encoding=tfds.features.Encoding.BYTES),
        "description": text(),
        "extra": text(),
    }


class Jaxrec(tfds.core.GeneratorBasedBuilder):
    """jaxrec sources as ArrayRecord ``users`` / ``items`` splits. `loader` replaces `load_dataset` (e.g. tests)."""

    name = BUILDER_NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "users and items splits; leave-one-out left to jaxrec."}
    BUILDER_CONFIGS = list(DEFAULT_CONFIGS)
    DEFAULT_BUILDER_CONFIG_NAME = "synthetic"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(DEFAULT_CONFIGS)

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This file (TFDS uses it to look for a checksums file; there is none, as nothing is downloaded).

        TFDS 4.9.10's own lookup evaluates ``isinstance(path, importlib_resources.abc.Traversable)`` for any builder
        defined in a package, which raises ModuleNotFoundError unless the ``importlib_resources`` backport is
        installed (TFDS requires it only on Python < 3.9).
        """
        return epath.Path(__file__)

    def __init__(self, *, loader: Loader | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("file_format", "array_record")
        self._loader = loader
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Per-user chronological item sequences (split 'users') and the item catalogue ('items').",
            features=tfds.features.FeaturesDict(_features()),
            disable_shuffling=True,  # record i of 'users' is user i, record i of 'items' is item i + 1
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        dataset = self._load(dl_manager)
        self.info.metadata.update(_dataset_metadata(dataset, self.builder_config))
        return {USERS_SPLIT: self._generate_examples(dataset, USERS_SPLIT),
                ITEMS_SPLIT: self._generate_examples(dataset, ITEMS_SPLIT)}

    def _generate_examples(self, dataset: Dataset, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        records = _user_records(dataset) if split == USERS_SPLIT else _item_records(dataset.catalog)
        yield from enumerate(records)

    def _load(self, dl_manager: tfds.download.DownloadManager) -> Dataset:
        config: JaxrecConfig = self.builder_config
        path = str(_resolve_manual_dir(dl_manager, config)) if config.required_files else None
        dataset = (self._loader or _default_loader())(config.source, path, **config.options)
        if not isinstance(dataset, Dataset):
            raise DataError(f"{BUILDER_NAME}/{config.name}: the loader returned {type(dataset).__name__}, "
                            "expected a jaxrec Dataset")
        return dataset


def _resolve_manual_dir(dl_manager: tfds.download.DownloadManager, config: JaxrecConfig) -> epath.Path:
    """``manual_dir/<config name>`` if it holds the required files, else ``manual_dir``; a clear error otherwise."""
    expected = ", ".join(config.required_files)
    configured = getattr(dl_manager, "_manual_dir", None)  # only for the message
    try:
        root = epath.Path(dl_manager.manual_dir)
    except AssertionError as error:  # TFDS: manual dir missing or empty
        raise DataError(f"{BUILDER_NAME}/{config.name}: manual dir {configured} does not exist or is empty; it must "
                        f"contain {expected} (directly or in a subfolder {config.name!r}). Pass it with "
                        "DownloadConfig(manual_dir=...).") from error
    for candidate in (root / config.name, root):
        if all((candidate / name).exists() for name in config.required_files):
            return candidate
    missing = [name for name in config.required_files if not (root / name).exists()]
    raise DataError(f"{BUILDER_NAME}/{config.name}: manual dir {root} is missing {', '.join(missing)} "
                    f"(expected {expected}, directly or in a subfolder {config.name!r})")


# ----------------------------------------------------------------------------------------------------------- records
_EMPTY_ITEMS = np.zeros(0, dtype=np.int32)
_NO_USER = {"user_index": None, "user_id": None, "item_ids": _EMPTY_ITEMS}
_NO_ITEM = {"item_id": None, "raw_id": None, "title": None, "categories": None, "brand": None, "price": math.nan,
            "description": None, "extra": None}


def _user_records(dataset: Dataset) -> Iterator[dict[str, Any]]:
    for user, user_id in enumerate(dataset.user_ids):
        yield {"user_index": user, "user_id": user_id, "item_ids": dataset.sequence(user), **_NO_ITEM}


def _item_records(catalog: Catalog) -> Iterator[dict[str, Any]]:
    for item_id in range(1, catalog.num_items + 1):
        item = catalog.item(item_id)
        categories = item.get("categories")
        yield {**_NO_USER, "item_id": item_id, "raw_id": item["raw_id"], "title": item.get("title"),
               "categories": None if categories is None else json.dumps([list(path) for path in categories]),
               "brand": item.get("brand"), "price": math.nan if item.get("price") is None else float(item["price"]),
               "description": item.get("description"), "extra": _extra_json(catalog, item_id)}


def _extra_json(catalog: Catalog, item_id: int) -> str | None:
    """The item's known `Catalog.extra` values as a JSON object; None when the catalogue has no extra fields."""
    if not catalog.extra:
        return None
    return json.dumps({key: values[item_id - 1] for key, values in catalog.extra.items()
                       if values[item_id - 1] is not None}, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    """The reader's report as plain JSON (NumPy scalars/arrays converted, anything else stringified)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _dataset_metadata(dataset: Dataset, config: JaxrecConfig) -> dict[str, Any]:
    catalog = dataset.catalog
    return {"name": dataset.name, "source": config.source, "options": _jsonable(config.options),
            "catalog_fields": [key for key, field in CATALOG_FIELDS.items() if getattr(catalog, field) is not None],
            "extra_fields": list(catalog.extra),
            "report": _jsonable(dataset.report)}


def user_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """Only the user keys of a ``users`` record."""
    return {key: record[key] for key in USER_KEYS}


def item_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """Only the item keys of an ``items`` record."""
    return {key: record[key] for key in ITEM_KEYS}


# -------------------------------------------------------------------------------------------------- back to jaxrec
def _text(value: Any) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _read_all(source: Iterable[Mapping[str, Any]], chunk: int = 8192) -> list[Mapping[str, Any]]:
    """All records; batched through ``__getitems__`` when the source has it (about 2x faster for ArrayRecord)."""
    if not (hasattr(source, "__getitems__") and hasattr(source, "__len__")):
        return list(source)
    size = len(source)  # type: ignore[arg-type]
    return [record for start in range(0, size, chunk)
            for record in source.__getitems__(list(range(start, min(start + chunk, size))))]


def _metadata_of(source: Any) -> dict[str, Any]:
    metadata = getattr(getattr(source, "dataset_info", None), "metadata", None)
    return dict(metadata) if metadata else {}


def _catalog_from(records: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any]) -> Catalog:
    """Inverse of `_item_records`; without metadata, keeps the fields (and extra keys) that some item has."""
    records = sorted(records, key=lambda r: int(r["item_id"]))
    ids = [int(r["item_id"]) for r in records]
    if ids != list(range(1, len(ids) + 1)):
        raise DataError(f"items split: item ids must be exactly 1..{len(ids)}, got {ids[:5]}...")
    columns: dict[str, tuple[Any, ...]] = {
        "title": tuple(_text(r["title"]) for r in records),
        "brand": tuple(_text(r["brand"]) for r in records),
        "description": tuple(_text(r["description"]) for r in records),
        "price": tuple(None if math.isnan(float(r["price"])) else float(r["price"]) for r in records),
        "categories": tuple(None if r["categories"] is None
                            else tuple(tuple(path) for path in json.loads(_text(r["categories"])))
                            for r in records),
    }
    fields = metadata.get("catalog_fields")
    if fields is None:
        fields = [key for key, values in columns.items() if any(v is not None for v in values)]
    extras = [{} if r.get("extra") is None else json.loads(_text(r["extra"])) for r in records]
    extra_keys = metadata.get("extra_fields")
    if extra_keys is None:
        extra_keys = list(dict.fromkeys(key for extra in extras for key in extra))
    return Catalog(raw_ids=tuple(_text(r["raw_id"]) for r in records),
                   **{CATALOG_FIELDS[key]: columns[key] for key in fields},
                   extra={key: tuple(extra.get(key) for extra in extras) for key in extra_keys})


def to_dataset(users: Iterable[Mapping[str, Any]], items: Iterable[Mapping[str, Any]],
               name: str | None = None) -> Dataset:
    """A jaxrec `Dataset` from the loaded ``users`` and ``items`` splits (TFDS data sources, or any record iterables).

    Records may come in any order. Name, report and which catalogue fields exist come from the data source's
    ``metadata.json`` when available (`name` overrides the stored name).
    """
    metadata = _metadata_of(users) or _metadata_of(items)
    catalog = _catalog_from(_read_all(items), metadata)
    rows = sorted(((int(r["user_index"]), _text(r["user_id"]), np.asarray(r["item_ids"], np.int32))
                   for r in _read_all(users)),
                  key=lambda row: row[0])
    if [row[0] for row in rows] != list(range(len(rows))):
        raise DataError(f"users split: user indices must be exactly 0..{len(rows) - 1}")
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row[2]) for row in rows], out=offsets[1:])
    sequences = np.concatenate([row[2] for row in rows]) if rows else np.zeros(0, np.int32)
    return Dataset(name or metadata.get("name", "tfds"), catalog, tuple(row[1] for row in rows), offsets,
                   sequences, dict(metadata.get("report") or {}))


# ------------------------------------------------------------------------------------------------------ entry points
def make_builder(config: str | JaxrecConfig, data_dir: str | epath.PathLike, *,
                 loader: Loader | None = None) -> Jaxrec:
    """A `Jaxrec` builder for a config name (see `DEFAULT_CONFIGS`) or a custom `JaxrecConfig`."""
    return Jaxrec(config=config, data_dir=str(data_dir), loader=loader)


def _prepared(config: str | JaxrecConfig, data_dir: str | epath.PathLike,
              manual_dir: str | epath.PathLike | None, loader: Loader | None) -> Jaxrec:
    builder = make_builder(config, data_dir, loader=loader)
    download_config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else str(manual_dir))
    builder.download_and_prepare(download_config=download_config)
    return builder


def build(config: str | JaxrecConfig, data_dir: str | epath.PathLike, manual_dir: str | epath.PathLike | None = None,
          *, loader: Loader | None = None) -> epath.Path:
    """Prepare the ArrayRecord files (a no-op when already there) and return their folder. The CLI hook."""
    return epath.Path(_prepared(config, data_dir, manual_dir, loader).data_dir)


def data_sources(config: str | JaxrecConfig, data_dir: str | epath.PathLike,
                 manual_dir: str | epath.PathLike | None = None, *, loader: Loader | None = None) -> tuple[Any, Any]:
    """The (``users``, ``items``) random-access sources, building first if needed."""
    sources = _prepared(config, data_dir, manual_dir, loader).as_data_source()
    return sources[USERS_SPLIT], sources[ITEMS_SPLIT]


def load(config: str | JaxrecConfig, data_dir: str | epath.PathLike, manual_dir: str | epath.PathLike | None = None,
         *, loader: Loader | None = None) -> Dataset:
    """TFDS -> jaxrec in one call: build if needed, then `to_dataset`."""
    return to_dataset(*data_sources(config, data_dir, manual_dir, loader=loader))
