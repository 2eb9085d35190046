"""Datasets: the `Catalog`/`Dataset` types, readers for each source, splits and input pipelines."""

from jaxrec.data.types import INVALID_ITEM, PAD_ITEM, Catalog, DataError, Dataset

__all__ = ["Catalog", "DataError", "Dataset", "INVALID_ITEM", "PAD_ITEM"]
