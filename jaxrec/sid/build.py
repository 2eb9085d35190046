"""The SID stage: catalogue text -> embeddings -> quantizer -> collision digit -> `SIDTable` + diagnostics.

Artifacts in the stage's folder: `embeddings.npy` + `embeddings.json`, `sid_table.npz`, `sid_diagnostics.json`
(which records `parameters`: the text encoder's and the quantizer's sizes, for the scaling-law fits).
An artifact that exists is reused only when its header says it was made from the same inputs (encoder weights,
template, texts; quantizer config, embeddings); a different one raises an error instead of being silently
overwritten or recomputed. `force=True` rebuilds.

`sid.table` names a table built elsewhere (e.g. once for a sweep, or on another machine): it is verified, checked
against the catalogue and the configured quantizer, and copied into the stage's folder instead of being rebuilt.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxrec.data.types import Catalog
from jaxrec.sid.collisions import with_collision_digit
from jaxrec.sid.diagnostics import sid_diagnostics
from jaxrec.sid.quantizers import QuantizerConfig, quantize, quantizer_parameters
from jaxrec.sid.table import SIDTable, SIDTableError
from jaxrec.text.embed import EmbeddingsError, embed_catalog, embeddings_header, load_embeddings
from jaxrec.text.item_text import DEFAULT_TEMPLATE, item_texts

logger = logging.getLogger(__name__)

TABLE_FILE, DIAGNOSTICS_FILE = "sid_table.npz", "sid_diagnostics.json"


def sid_config(**overrides: Any) -> ml_collections.ConfigDict:
    """The `sid` config group with its defaults (MiniLM, the default template, RQ-KMeans 3 x 256); a dict override
    for `quantizer` is merged into that group."""
    config = ml_collections.ConfigDict({
        "encoder": "minilm",  # "minilm" (the packaged all-MiniLM-L6-v2) or a Hugging Face checkpoint folder
        "template": DEFAULT_TEMPLATE,
        "separator": ". ",
        "empty_text": "error",  # or "raw_id": 'item <raw id>' for items with no text (counted)
        "tokens_per_batch": 2048,  # small batches stay in cache: ~20% more tokens/s than 8192 on a 2-core CPU
        "quantizer": dataclasses.asdict(QuantizerConfig()),
        "table": "",  # path of a prebuilt sid_table.npz to use instead of embedding + quantizing
        "progress": True,
    })
    config.update(overrides)  # recursive: quantizer={"method": "rq_vae"} changes that field only
    return config


def embed_stage(config: ml_collections.ConfigDict, catalog: Catalog, folder: Path, *,
                force: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of every item's text (row = item_id - 1), loaded when an identical artifact exists."""
    from jaxrec.text.encoders import load_text_encoder  # flax + transformers: only when a stage runs

    template, separator = tuple(config.template), config.separator
    texts, text_report = item_texts(catalog, template, separator, config.empty_text)
    encoder = load_text_encoder(config.encoder)
    if (folder / "embeddings.json").exists() and not force:
        expect = {"encoder": encoder.name, "weights_hash": encoder.weights_hash, "template": list(template),
                  "separator": separator, "items": len(texts), "max_length": encoder.max_length,
                  "pooling": encoder.pooling, "normalize": encoder.normalize}
        embeddings, header = load_embeddings(folder, expect)
        header.setdefault("parameters", encoder.num_parameters)  # embeddings written before it was recorded
        if header["text_hash"] != embeddings_header(encoder, texts, template, separator, text_report)["text_hash"]:
            raise EmbeddingsError(f"{folder / 'embeddings.json'}: the item texts changed since these embeddings "
                                  f"were made (different catalogue?); use another workdir or --force")
        logger.info(f"reusing {folder / 'embeddings.npy'} ({header['encoder']}, {len(texts)} items)")
        return embeddings, header
    return embed_catalog(encoder, texts, template, separator, text_report, folder, progress=config.progress,
                         tokens_per_batch=config.tokens_per_batch)


def quantize_stage(embeddings: np.ndarray, embeddings_header: dict[str, Any], quantizer: QuantizerConfig,
                   folder: Path, catalog: Catalog | None = None, *, force: bool = False
                   ) -> tuple[SIDTable, dict[str, Any]]:
    """Quantize, append the collision digit, and write the table and its diagnostics."""
    provenance = {"quantizer": _quantizer_header(quantizer),
                  "embeddings": {key: embeddings_header.get(key) for key in
                                 ("encoder", "weights_hash", "template", "separator", "text_hash", "content_hash")}}
    provenance = json.loads(json.dumps(provenance))  # tuples -> lists, as they will read back from the header
    # What the scaling-law fits need from this stage: the frozen text encoder's and the quantizer's sizes.
    parameters = {"text_encoder": embeddings_header.get("parameters"),
                  "quantizer": quantizer_parameters(quantizer, int(embeddings.shape[1]))}
    table_path = folder / TABLE_FILE
    if table_path.exists() and not force:
        table = SIDTable.load(table_path, expect=provenance)
        diagnostics = json.loads((folder / DIAGNOSTICS_FILE).read_text())
        diagnostics.setdefault("parameters", parameters)
        logger.info(f"reusing {table_path} ({table.num_items} items)")
        return table, diagnostics
    started = time.perf_counter()
    quantization = quantize(embeddings, quantizer)
    codes = with_collision_digit(quantization.codes)
    table = SIDTable.create(codes, {
        **provenance, "backend": jax.default_backend(), "jax_version": jax.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    table.save(table_path)
    diagnostics = sid_diagnostics(quantization, codes, quantizer.codebook_size, catalog)
    diagnostics["seconds"] = time.perf_counter() - started
    diagnostics["content_hash"] = table.header["content_hash"]
    diagnostics["parameters"] = parameters
    (folder / DIAGNOSTICS_FILE).write_text(json.dumps(diagnostics, indent=2))
    logger.info(f"SIDs: {quantizer.method} {quantizer.levels} x {quantizer.codebook_size}, level-1 usage "
                f"{diagnostics['levels'][0]['usage']:.1%}, unique before digit "
                f"{diagnostics['unique_before_digit']:.1%}, largest collision group "
                f"{diagnostics['largest_collision_group']} -> {table_path}")
    return table, diagnostics


def _quantizer_header(quantizer: QuantizerConfig) -> dict[str, Any]:
    """The quantizer config as a table header records it (tuples -> lists, as JSON reads them back)."""
    return json.loads(json.dumps(dataclasses.asdict(quantizer)))


def build_sid(config: ml_collections.ConfigDict, catalog: Catalog, folder: str | Path, *,
              force: bool = False) -> tuple[SIDTable, dict[str, Any]]:
    """embed -> quantize -> table for `catalog`, artifacts in `folder` (or the prebuilt `config.table`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    quantizer = QuantizerConfig.from_dict(config.quantizer.to_dict())
    if config.get("table"):
        return prebuilt_table(Path(config.table), quantizer, catalog, folder)
    embeddings, header = embed_stage(config, catalog, folder, force=force)
    return quantize_stage(embeddings, header, quantizer, folder, catalog, force=force)


def prebuilt_table(path: Path, quantizer: QuantizerConfig, catalog: Catalog, folder: Path
                   ) -> tuple[SIDTable, dict[str, Any]]:
    """Use the table at `path` (and its diagnostics, when beside it and of this very table): verified, and refused
    when it covers another number of items or was made by another quantizer config than `quantizer`; copied into
    `folder` so the run directory is self-contained (`jaxrec predict` reads it there)."""
    table = SIDTable.load(path, expect={"quantizer": _quantizer_header(quantizer)})
    if table.num_items != catalog.num_items:
        raise SIDTableError(f"{path}: the table has {table.num_items} items, the catalogue {catalog.num_items}; it was "
                            f"built for another dataset")
    source = path.parent / DIAGNOSTICS_FILE
    diagnostics = json.loads(source.read_text()) if source.exists() else {}
    if diagnostics and diagnostics.get("content_hash") != table.header["content_hash"]:
        logger.warning(f"{source} describes another SID table than {path} (content hash); left out, so the text "
                       f"encoder and quantizer sizes of this run are unknown")
        diagnostics = {}
    target = folder / TABLE_FILE
    if target.resolve() != path.resolve():
        table.save(target)
        if diagnostics:
            shutil.copyfile(source, folder / DIAGNOSTICS_FILE)
        else:  # never leave an earlier build's diagnostics beside this table
            (folder / DIAGNOSTICS_FILE).unlink(missing_ok=True)
    logger.info(f"using the prebuilt SID table {path} ({table.num_items} items)")
    return table, diagnostics
