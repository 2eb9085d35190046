"""Multi-head attention for pretrained transformers (BERT, T5, Qwen3) and the models built from their blocks.

One module, configured per family:
  * separate query/key/value projections (heads as their own shardable axis), optional biases (BERT, Qwen2);
  * grouped-query attention: `num_kv_heads` key/value heads shared by groups of query heads (Qwen3), computed
    without materialising repeated keys/values;
  * optional per-head RMSNorm of queries and keys before RoPE (Qwen3);
  * optional rotary position embedding with Hugging Face's rotate-half convention and a configurable theta;
  * an optional additive bias on the scores (T5's relative position bias) and a configurable query scale (T5 does
    not divide scores by sqrt(head_dim): `query_scale=1.0`);
  * cross-attention over a `context` sequence (the T5 decoder);
  * cached decoding for beam search (`project_kv` + `attend_beams` / `beam_attention`): each beam is one query,
    keys shared by a row's beams (encoder states, a prefilled history) are stored once per row, and each beam's
    own decoded keys come from its KV cache.
Scores, the bias and the softmax are fp32 whatever the compute dtype. Masks are boolean [B|1, 1|H, Q, K]
(True = attend). The SASRec `jaxrec.nn.layers.Attention` (fused qkv) is separate and unchanged.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrec.nn import sdpa
from jaxrec.nn.layers import Dense, Dropout, RMSNorm, annotated_param


def padding_mask(attention_mask: jax.Array) -> jax.Array:
    """[B, K] (1 = real token) -> [B, 1, 1, K] boolean: every query attends to every real key (encoders)."""
    return attention_mask.astype(bool)[:, None, None, :]


def causal_mask(attention_mask: jax.Array) -> jax.Array:
    """[B, L] (1 = real token) -> [B, 1, L, L] boolean: query i attends to real keys j <= i (decoders)."""
    length = attention_mask.shape[1]
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))
    return causal[None, None] & attention_mask.astype(bool)[:, None, None, :]


def segment_mask(segment_ids: jax.Array, *, causal: bool = False) -> jax.Array:
    """Packed rows: [B, L] segment ids (0 = padding, 1, 2, ... = the sequences packed into the row) -> [B, 1, L, L]
    boolean: a token attends only to real tokens of its own sequence (and, if `causal`, not to later ones)."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    mask = same & (segment_ids != 0)[:, None, :]
    if causal:
        length = segment_ids.shape[1]
        mask = mask & jnp.tril(jnp.ones((length, length), dtype=bool))[None]
    return mask[:, None]


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """[B, L] segment ids of contiguous packed sequences -> each token's position within its own sequence."""
    index = jnp.arange(segment_ids.shape[1])
    starts = jnp.concatenate([jnp.ones_like(segment_ids[:, :1], dtype=bool),
                              segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)
    return index - jax.lax.cummax(jnp.where(starts, index, 0), axis=1)


def apply_rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding of [B, L, H, D] at integer `positions` [B, L] or [L] (HF rotate-half: the first
    and second halves of the head dimension are the two coordinates of each rotated pair). Angles in fp32."""
    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]  # [B, L, 1, D]
    x32 = x.astype(jnp.float32)
    rotated = jnp.concatenate([-x32[..., dim // 2:], x32[..., :dim // 2]], axis=-1)
    return (x32 * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x.dtype)


def relative_position_bucket(relative_position: jax.Array, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> jax.Array:
    """T5's bucket of `relative_position` = key position - query position (Mesh TensorFlow / HF convention).

    Bidirectional (encoder): half the buckets for keys after the query. Unidirectional (causal decoder): keys after
    the query all share bucket 0. Small distances get one bucket each, larger ones logarithmic bins up to
    `max_distance`, beyond which they share the last bucket.
    """
    relative_position = relative_position.astype(jnp.int32)
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    # Same fp32 operations, in the same order, as the reference (bucket edges fall on exact powers).
    scaled = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
              / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    large = jnp.minimum(max_exact + scaled.astype(jnp.int32), num_buckets - 1)
    return buckets + jnp.where(distance < max_exact, distance, large)


class RelativePositionBias(nnx.Module):
    """T5's learned per-head bias of the attention scores, indexed by relative-position bucket.

    One table [num_buckets, heads] per stack (held by the stack and added in every layer, as in T5).
    """

    def __init__(self, num_heads: int, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.bidirectional, self.num_buckets, self.max_distance = bidirectional, num_buckets, max_distance
        self.embedding = annotated_param(rngs, nnx.initializers.normal(0.02), (num_buckets, num_heads),
                                         (None, "heads"), param_dtype)

    def __call__(self, query_length: int, key_length: int, query_offset: int | jax.Array = 0) -> jax.Array:
        """[1, H, Q, K] fp32 bias for queries at positions offset..offset+Q-1 over keys 0..K-1."""
        query = jnp.arange(query_length)[:, None] + query_offset
        key = jnp.arange(key_length)[None, :]
        buckets = relative_position_bucket(key - query, bidirectional=self.bidirectional,
                                           num_buckets=self.num_buckets, max_distance=self.max_distance)
        values = jnp.take(self.embedding[...].astype(jnp.float32), buckets, axis=0)  # [Q, K, H]
        return jnp.transpose(values, (2, 0, 1))[None]


def _by_group(x: jax.Array, num_kv_heads: int) -> jax.Array:
    """[B|1, H|1, Q, K] -> [B|1, KVH|1, G|1, Q, K] to line up with grouped scores."""
    if x.shape[1] == 1:
        return x[:, :, None]
    return x.reshape(x.shape[0], num_kv_heads, -1, *x.shape[2:])


def _scores_shape(layout: sdpa.Layout, q: jax.Array, k: jax.Array) -> tuple[int, ...]:
    """The shape of the attention scores of q and k in `layout` (the dropout mask's shape)."""
    sizes = dict(zip(layout.q, q.shape)) | dict(zip(layout.k, k.shape))
    return tuple(sizes[axis] for axis in layout.s)


class MultiHeadAttention(nnx.Module):
    """Attention with separate q/k/v projections, GQA, optional qk-norm, RoPE, additive bias and cross-attention."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, num_kv_heads: int | None = None,
                 qkv_bias: bool = False, out_bias: bool = False, query_scale: float | None = None,
                 qk_norm_epsilon: float | None = None, rope_theta: float | None = None, dropout: float = 0.0,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        """`query_scale` defaults to head_dim ** -0.5; `qk_norm_epsilon` enables the per-head query/key RMSNorm;
        `rope_theta` enables rotary embeddings."""
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads}")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.query_scale = head_dim ** -0.5 if query_scale is None else query_scale
        self.rope_theta, self.dtype = rope_theta, dtype
        self.query = Dense((dim,), (num_heads, head_dim), ("embed", "heads", "kv"), use_bias=qkv_bias, **kw)
        self.key = Dense((dim,), (num_kv_heads, head_dim), ("embed", "heads", "kv"), use_bias=qkv_bias, **kw)
        self.value = Dense((dim,), (num_kv_heads, head_dim), ("embed", "heads", "kv"), use_bias=qkv_bias, **kw)
        self.out = Dense((num_heads, head_dim), (dim,), ("heads", "kv", "embed"), use_bias=out_bias, **kw)
        if qk_norm_epsilon is None:
            self.query_norm = self.key_norm = None
        else:
            self.query_norm = RMSNorm(head_dim, epsilon=qk_norm_epsilon, names=("kv",), **kw)
            self.key_norm = RMSNorm(head_dim, epsilon=qk_norm_epsilon, names=("kv",), **kw)
        self.dropout = Dropout(dropout)

    def __call__(self, x: jax.Array, mask: jax.Array, *, context: jax.Array | None = None,
                 bias: jax.Array | None = None, positions: jax.Array | None = None,
                 kv: tuple[jax.Array, jax.Array] | None = None, deterministic: bool = True,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        """[B, Q, dim] -> [B, Q, dim], attending over `context` [B, K, dim] (cross-attention) or `x` itself.

        `mask` [B|1, 1|H, Q, K] boolean; `bias` [B|1, H, Q, K] added to the scaled scores; `positions` [B, Q] or
        [Q] for RoPE (default 0..Q-1); `kv`: the source's keys and values from `project_kv(source, positions)`, for
        a caller that keeps them (a KV cache) and should not project them twice.
        """
        source = x if context is None else context
        q = self.query(x)  # [B, Q, H, D]
        if self.query_norm is not None:
            q = self.query_norm(q)
        if self.rope_theta is not None:
            if context is not None:
                raise ValueError("rotary embeddings are for self-attention; got a cross-attention context")
            positions = jnp.arange(x.shape[1]) if positions is None else positions
            q = apply_rope(q, positions, self.rope_theta)
        # From `project_kv` (key-normed and, with RoPE, rotated at the same positions), or projected here.
        k, v = kv if kv is not None else self.project_kv(source, positions)  # [B, K, KVH, D]
        batch, length = q.shape[:2]
        bias = None if bias is None else bias.astype(jnp.float32)
        if self.num_kv_heads == self.num_heads:  # plain multi-head: 4-D batched matmuls, heads leading (faster)
            q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # [B, H, L, D]
            layout = sdpa.MULTI_HEAD
        else:
            q = q.reshape(batch, length, self.num_kv_heads, -1, self.head_dim)  # query head h uses kv head h // G
            layout = sdpa.GROUPED
            mask = _by_group(mask, self.num_kv_heads)
            bias = None if bias is None else _by_group(bias, self.num_kv_heads)
        keep = self.dropout.keep_mask(_scores_shape(layout, q, k), deterministic=deterministic, rngs=rngs)
        attended = sdpa.attention(layout, self.query_scale, q, k, v, mask, bias, keep, self.dropout.rate)
        return self.out(attended.reshape(batch, length, self.num_heads, self.head_dim))

    def project_kv(self, source: jax.Array, positions: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Keys and values [B, S, KVH, D] of `source` [B, S, dim]: key-normed if configured and, with RoPE, keys
        rotated at `positions` ([B, S] or [S]; default 0..S-1), as attention uses them."""
        k = self.key(source)
        if self.key_norm is not None:
            k = self.key_norm(k)
        if self.rope_theta is not None:
            k = apply_rope(k, jnp.arange(source.shape[1]) if positions is None else positions, self.rope_theta)
        return k, self.value(source)

    def attend_beams(self, x: jax.Array, *, shared: BeamKeys | None = None, own: BeamKeys | None = None,
                     position: jax.Array | int | None = None) -> jax.Array:
        """One decoding position for K beams per row: [B, K, dim] -> [B, K, dim] (see `beam_attention`); with
        RoPE the queries are rotated at `position` (a scalar: every beam decodes the same position)."""
        q = self.query(x)
        if self.query_norm is not None:
            q = self.query_norm(q)
        if self.rope_theta is not None:
            if position is None:
                raise ValueError("attend_beams with rotary embeddings needs the decoded `position`")
            q = apply_rope(q, jnp.full((x.shape[1],), position), self.rope_theta)  # K beams share one position
        return self.out(beam_attention(q, shared=shared, own=own, query_scale=self.query_scale, dtype=self.dtype))


# (keys, values, mask, bias): see `beam_attention` for the shapes of the shared and the per-beam kind.
BeamKeys = tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]


def empty_beam_cache(batch: int, kv_heads: int, length: int, head_dim: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Zero per-beam KV cache for `length` decoded positions, [batch]-leading (beam_search adds the beam axis):
    keys [batch, KVH, D, T] (transposed: the score matmul reads them in place), values [batch, KVH, T, D]."""
    return (jnp.zeros((batch, kv_heads, head_dim, length), dtype),
            jnp.zeros((batch, kv_heads, length, head_dim), dtype))


def write_beam_cache(cache: tuple[jax.Array, jax.Array], k: jax.Array, v: jax.Array, step: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """The cache (see `empty_beam_cache`, with the beam axis) with keys and values [B, K, KVH, D] of decoded
    position `step` written."""
    keys, values = cache
    return (jax.lax.dynamic_update_index_in_dim(keys, k.astype(keys.dtype), step, axis=4),
            jax.lax.dynamic_update_index_in_dim(values, v.astype(values.dtype), step, axis=3))


def beam_cache_length(cache: tuple[jax.Array, jax.Array]) -> int:
    """The number of decoded positions a cache (`empty_beam_cache` layout, with or without the beam axis) holds."""
    return cache[1].shape[-2]


def resize_beam_cache(cache: tuple[jax.Array, jax.Array], length: int) -> tuple[jax.Array, jax.Array]:
    """The cache (`empty_beam_cache` layout, with or without the beam axis) cut or zero-padded to `length` decoded
    positions: beam search grows it in phases (`beam_search`'s `resize_state`)."""
    keys, values = cache

    def fit(x: jax.Array, axis: int) -> jax.Array:
        axis %= x.ndim
        if x.shape[axis] >= length:
            return jax.lax.slice_in_dim(x, 0, length, axis=axis)
        return jnp.pad(x, [(0, length - x.shape[axis]) if i == axis else (0, 0) for i in range(x.ndim)])

    return fit(keys, -1), fit(values, -2)


def heads_first(kv: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(keys, values) [B, S, KVH, D] as `project_kv` returns them -> [B, KVH, S, D], the layout `beam_attention`
    takes for shared keys. Done once per row before decoding, not at every step."""
    return tuple(t.transpose(0, 2, 1, 3) for t in kv)


def beam_attention(q: jax.Array, *, shared: BeamKeys | None = None, own: BeamKeys | None = None,
                   query_scale: float, dtype=jnp.float32) -> jax.Array:
    """Attention of one query per beam, q [B, K, H, D] -> [B, K, H, D], over two kinds of keys:

    * `shared` = (k, v [B, KVH, S, D] (`heads_first`), mask [B, S], bias [1|B, H, 1|K, S] or None): keys every
      beam of a row attends to (the encoder states for cross-attention; the prefilled history of a decoder-only
      model), held once per row, not once per beam;
    * `own` = (k [B, K, KVH, D, T], v [B, K, KVH, T, D], mask [1|B, 1|K, T], bias [1|B, H, 1|K, T] or None):
      each beam's own keys (its KV cache of decoded positions: `empty_beam_cache`, `write_beam_cache`).
    One fp32 softmax over the union of both, exactly as attention over the concatenated keys. Keys may have fewer
    heads than the queries (grouped-query attention: query head h reads key head h // (H / KVH)). The layouts let
    every matmul read the caches in place: a cache laid out [.., T, KVH, D] was copied to [.., KVH, D, T] at
    every decoding step (about a sixth of the CPU profile of LLM-as-RS title decoding).
    """
    if shared is None and own is None:
        raise ValueError("beam_attention needs shared or own keys")
    batch, beams, heads, dim = q.shape
    kv_heads = (shared if shared is not None else own)[1].shape[-3]
    grouped = q.reshape(batch, beams, kv_heads, heads // kv_heads, dim)  # plain multi-head: groups of one
    return _grouped_beam_attention(grouped, shared, own, query_scale, dtype).reshape(q.shape)


def _grouped_beam_attention(q: jax.Array, shared: BeamKeys | None, own: BeamKeys | None, query_scale: float,
                            dtype) -> jax.Array:
    """`beam_attention` with q [B, K, KVH, G, D] grouped under its key/value head. Returns [B, K, KVH, G, D].

    Each kind of keys has the score layout its matmuls read without copying the keys: [B, KVH, K, G, S] for the
    shared keys, with the queries moved to [B, KVH, K, G, D] first (so the K x G query rows of a row and head are one
    contiguous matrix: 2.5x faster on CPU than leaving the beam axis between batch axes), and [B, K, KVH, G, T] for
    the beams' own keys (one small matmul per beam and head). The softmax over their union is assembled from
    per-kind row maxima and sums (no concatenated scores): weights exp(s - m) multiply the values, and the sum is
    divided by the total afterwards.
    """
    kv_heads, groups = q.shape[2], q.shape[3]
    masked = jnp.finfo(jnp.float32).min

    def grouped_bias(bias: jax.Array, beams_first: bool) -> jax.Array:  # [1|B, H, 1|K, S] -> the scores' layout
        bias = bias.reshape(bias.shape[0], kv_heads, groups, *bias.shape[2:])  # [1|B, KVH, G, 1|K, S]
        return bias.transpose((0, 3, 1, 2, 4) if beams_first else (0, 1, 3, 2, 4)).astype(jnp.float32)

    # Per kind: scores, row maximum [B, K, KVH, G], the permutation of the kind's leading axes to [B, K, KVH, G],
    # the weights x values einsum (output in the kind's layout) and the values.
    parts = []
    if shared is not None:
        k, v, mask, bias = shared
        heads_first_q = q.transpose(0, 2, 1, 3, 4)  # [B, KVH, K, G, D]
        s = jnp.einsum("bnkgd,bnsd->bnkgs", heads_first_q, k, preferred_element_type=jnp.float32) * query_scale
        s = s if bias is None else s + grouped_bias(bias, beams_first=False)
        s = jnp.where(mask.astype(bool)[:, None, None, None, :], s, masked)
        parts.append((s, jnp.max(s, axis=-1).transpose(0, 2, 1, 3), (0, 2, 1, 3), "bnkgs,bnsd->bnkgd", v))
    if own is not None:
        k, v, mask, bias = own
        s = jnp.einsum("bkngd,bkndt->bkngt", q, k, preferred_element_type=jnp.float32) * query_scale
        s = s if bias is None else s + grouped_bias(bias, beams_first=True)
        s = jnp.where(mask.astype(bool)[:, :, None, None, :], s, masked)
        parts.append((s, jnp.max(s, axis=-1), (0, 1, 2, 3), "bkngt,bkntd->bkngd", v))
    maximum = parts[0][1] if len(parts) == 1 else jnp.maximum(parts[0][1], parts[1][1])  # [B, K, KVH, G]
    total, attended = 0.0, 0.0
    for s, _, to_beams_first, spec, v in parts:
        from_beams_first = tuple(to_beams_first.index(i) for i in range(4))  # the inverse permutation
        weights = jnp.exp(s - maximum.transpose(from_beams_first)[..., None])
        total = total + jnp.sum(weights, axis=-1).transpose(to_beams_first)
        part = jnp.einsum(spec, weights.astype(dtype), v, preferred_element_type=jnp.float32)
        attended = attended + part.transpose((*to_beams_first, 4))
    return (attended / total[..., None]).astype(dtype)
