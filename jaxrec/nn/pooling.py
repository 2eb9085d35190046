"""Sentence embeddings from token states: pooling over the attention mask, L2 normalisation.

The sentence-transformers recipe (all-MiniLM-L6-v2's modules.json: Transformer -> Pooling(mean) -> Normalize):
mean over real tokens with the count clamped at 1e-9, then `x / max(||x||, 1e-12)` as `torch.nn.functional.normalize`.
Everything is computed in fp32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

POOLING_MODES = ("mean", "cls", "last")


def pool(hidden: jax.Array, attention_mask: jax.Array, mode: str = "mean") -> jax.Array:
    """[B, L, D] states, [B, L] mask (1 = real token) -> [B, D] fp32.

    "mean": average of the real tokens; "cls": the first position; "last": the last real token (any padding side).
    """
    hidden = hidden.astype(jnp.float32)
    mask = attention_mask.astype(jnp.float32)
    if mode == "mean":
        total = jnp.einsum("bld,bl->bd", hidden, mask)
        return total / jnp.maximum(mask.sum(-1, keepdims=True), 1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        length = mask.shape[1]
        last = length - 1 - jnp.argmax(mask[:, ::-1], axis=1)  # index of the last 1 in each row
        return jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    raise ValueError(f"unknown pooling mode {mode!r}; expected one of {POOLING_MODES}")


def l2_normalize(x: jax.Array, epsilon: float = 1e-12) -> jax.Array:
    """x / max(||x||_2, epsilon) over the last axis (torch.nn.functional.normalize), in fp32."""
    x = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, epsilon)


def pool_segments(hidden: jax.Array, segment_ids: jax.Array, num_segments: int, mode: str = "mean") -> jax.Array:
    """Packed rows: [B, L, D] states and [B, L] segment ids (0 = padding) -> [B, num_segments, D] fp32, one pooled
    vector per packed sequence (segment s at index s - 1; rows with fewer segments give zeros there)."""
    hidden = hidden.astype(jnp.float32)
    members = (segment_ids[..., None] == jnp.arange(1, num_segments + 1)).astype(jnp.float32)  # [B, L, S]
    if mode == "mean":
        total = jnp.einsum("bld,bls->bsd", hidden, members)
        return total / jnp.maximum(members.sum(1)[..., None], 1e-9)
    if mode in ("cls", "last"):
        length = segment_ids.shape[1]
        index = jnp.arange(length)[None, :, None]
        # First (cls) or last token of each segment: the min / max position among its members.
        picked = jnp.where(members > 0, index, length if mode == "cls" else -1)
        position = picked.min(1) if mode == "cls" else picked.max(1)
        position = jnp.clip(position, 0, length - 1)
        found = members.sum(1) > 0
        gathered = jnp.take_along_axis(hidden, position[..., None], axis=1)
        return jnp.where(found[..., None], gathered, 0.0)
    raise ValueError(f"unknown pooling mode {mode!r}; expected one of {POOLING_MODES}")


def sentence_embeddings(hidden: jax.Array, attention_mask: jax.Array, *, pooling: str, normalize: bool,
                        segment_ids: jax.Array | None = None, num_segments: int = 0) -> jax.Array:
    """Pool token states into sentence embeddings ([B, D], or [B, num_segments, D] for packed rows), optionally
    L2-normalised: the one recipe every encoder family's `embed` uses."""
    if segment_ids is None:
        pooled = pool(hidden, attention_mask, pooling)
    else:
        pooled = pool_segments(hidden, segment_ids, num_segments, pooling)
    return l2_normalize(pooled) if normalize else pooled
