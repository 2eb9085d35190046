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
