"""Batched, jitted text encoding with length buckets, and the `embeddings.npy` artifact with its JSON header.

Texts are tokenised once, sorted by length and cut into batches whose padded length is the smallest bucket that
fits (8, 16, 24, 32, 48, 64, 96, ... up to the encoder's maximum). Each bucket has a fixed row count chosen so a
batch holds about `tokens_per_batch` tokens, so jit compiles one shape per bucket and padding stays small.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from jaxrec.text.encoders import TextEncoder

logger = logging.getLogger(__name__)


class EmbeddingsError(ValueError):
    """An embeddings artifact that is unreadable, corrupted or made by a different encoder/template."""


def length_buckets(max_length: int) -> list[int]:
    """8, 16, 24, 32, 48, 64, 96, 128, ... (steps of about 1.5x, multiples of 8), ending at `max_length`."""
    sizes = sorted({8, 16, 24} | {size for k in range(5, 20) for size in (2 ** k, 3 * 2 ** (k - 1))})
    return [size for size in sizes if size < max_length] + [max_length]


def encode_texts(encoder: TextEncoder, texts: Sequence[str], *, tokens_per_batch: int = 8192, max_rows: int = 256,
                 progress: bool = True) -> np.ndarray:
    """[len(texts), encoder.dim] float32 embeddings, in the order of `texts`."""
    ids = encoder.tokenizer(list(texts), truncation=True, max_length=encoder.max_length)["input_ids"]
    lengths = np.array([len(row) for row in ids])
    buckets = np.array(length_buckets(encoder.max_length))
    order = np.argsort(lengths, kind="stable")
    pad_id = encoder.tokenizer.pad_token_id or 0
    embed = encoder.embed  # jitted: one compilation per bucket shape
    out = np.zeros((len(texts), encoder.dim), np.float32)
    bar = tqdm(total=len(texts), desc=f"embed ({encoder.name})", unit="text", disable=not progress)
    start = 0
    while start < len(order):
        length = int(buckets[np.searchsorted(buckets, lengths[order[start]])])
        rows = max(1, min(max_rows, tokens_per_batch // length))
        # The batch takes the next `rows` texts that fit this bucket.
        fits = lengths[order[start:start + rows]] <= length
        count = int(np.argmin(fits)) if not fits.all() else int(fits.sum())
        chunk = order[start:start + count]
        input_ids = np.full((rows, length), pad_id, np.int32)
        mask = np.zeros((rows, length), np.int32)
        for row, index in enumerate(chunk):
            input_ids[row, :lengths[index]] = ids[index]
            mask[row, :lengths[index]] = 1
        out[chunk] = np.asarray(embed(input_ids, mask))[:count]
        bar.update(count)
        start += count
    bar.close()
    return out


def embeddings_header(encoder: TextEncoder, texts: Sequence[str], template: Sequence[str], separator: str,
                      text_report: dict[str, int]) -> dict[str, Any]:
    """What identifies an embeddings artifact: the encoder and its weights, the template and the exact texts."""
    return {"encoder": encoder.name, "family": encoder.family, "weights_hash": encoder.weights_hash,
            "template": list(template), "separator": separator, "dimension": encoder.dim,
            "max_length": encoder.max_length, "items": len(texts),
            "text_hash": hashlib.sha256("\n".join(texts).encode()).hexdigest(), "text_report": text_report}


def save_embeddings(folder: str | Path, embeddings: np.ndarray, header: dict[str, Any]) -> dict[str, Any]:
    """Write `embeddings.npy` and `embeddings.json` into `folder`; returns the header as written (+ content hash)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "embeddings.npy", embeddings)
    header = dict(header, content_hash=hashlib.sha256(np.ascontiguousarray(embeddings).tobytes()).hexdigest(),
                  dtype=str(embeddings.dtype), shape=list(embeddings.shape))
    (folder / "embeddings.json").write_text(json.dumps(header, indent=2, sort_keys=True))
    return header


def load_embeddings(folder: str | Path, expect: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read and verify `embeddings.npy` against its header; `expect` maps header fields to required values."""
    folder = Path(folder)
    try:
        header = json.loads((folder / "embeddings.json").read_text())
        embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise EmbeddingsError(f"{folder}: unreadable embeddings artifact ({error})") from error
    digest = hashlib.sha256(np.ascontiguousarray(embeddings).tobytes()).hexdigest()
    if digest != header.get("content_hash") or list(embeddings.shape) != header.get("shape"):
        raise EmbeddingsError(f"{folder / 'embeddings.npy'} does not match the content hash and shape in "
                              f"embeddings.json (corrupted or edited)")
    for field, value in (expect or {}).items():
        if header.get(field) != value:
            raise EmbeddingsError(f"{folder / 'embeddings.json'}: {field!r} is {header.get(field)!r}, expected "
                                  f"{value!r}; the embeddings were made differently (use another workdir or --force)")
    return embeddings, header


def embed_catalog(encoder: TextEncoder, texts: Sequence[str], template: Sequence[str], separator: str,
                  text_report: dict[str, int], folder: str | Path, *, progress: bool = True,
                  **encode_options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode the catalogue's texts and save the artifact; NaN/Inf rows raise EmbeddingsError naming the items."""
    started = time.perf_counter()
    embeddings = encode_texts(encoder, texts, progress=progress, **encode_options)
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if len(bad):
        raise EmbeddingsError(f"the encoder produced NaN/Inf for {len(bad)} items (item ids "
                              f"{(bad[:10] + 1).tolist()}), e.g. text {texts[bad[0]]!r}")
    header = embeddings_header(encoder, texts, template, separator, text_report)
    header["seconds"] = time.perf_counter() - started
    header = save_embeddings(folder, embeddings, header)
    logger.info(f"embedded {len(texts)} item texts with {encoder.name} in {header['seconds']:.1f} s")
    return embeddings, header
