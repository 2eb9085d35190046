"""Shared NNX layers with logical-axis sharding annotations.

Every weight carries logical axis names (`out_sharding` metadata) so that, inside
`jaxrec.train.mesh.sharding_context`, it is born sharded as the rules table says. Weights are stored in `param_dtype`
(fp32 master weights) and cast to the compute `dtype` at use, so bf16 compute needs no second copy of the model.
Randomness (dropout) is passed at call time as `rngs`, keeping modules free of RNG state and train steps pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Names = tuple[str | None, ...]


class Constant(nnx.Variable):
    """An array a model reads but never trains (token tables, tries, prompt tables), attached by a model family.
    Constants are frozen state, so the trainer hands them to the compiled step and `recommend` as arguments (never
    constants of the programs), replicated, and never checkpointed: `create` rebuilds them."""


def constants(tree: Any) -> Any:
    """`tree` (any pytree of arrays, e.g. a `DeviceTrie`) with every array in a `Constant`, marked as module data:
    `model.tables = constants({...})`; read back with `constant_values(model.tables)`."""
    return nnx.data(jax.tree.map(Constant, tree))


def constant_values(tree: Any) -> Any:
    """The arrays of a `constants(...)` tree, in its structure."""
    return jax.tree.map(lambda v: v.get_value(), tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def annotated_param(rngs: nnx.Rngs, init, shape: Sequence[int], names: Names, dtype,
                    kind: type[nnx.Param] = nnx.Param) -> nnx.Param:
    """A parameter (of variable type `kind`) annotated with logical axis names; sharded at creation when a mesh is
    active (jax.set_mesh), plain otherwise, so models also build on a laptop with no mesh."""
    mesh_active = not jax.sharding.get_abstract_mesh().empty
    return kind(init(rngs.params(), tuple(shape), dtype), out_sharding=tuple(names), eager_sharding=mesh_active)


def contract(x: jax.Array, kernel: jax.Array, n_in: int) -> jax.Array:
    """x [..., *in] . kernel [*in, *out] -> [..., *out] over the last `n_in` axes of x.

    The leading axes are flattened into one: with several, XLA:CPU computes the kernel's gradient (a dot contracting
    all of them) by first writing the output gradient transposed, a slow strided copy of the largest activation (+40%
    on a [256, 80] x 128 -> 1024 -> 128 feed-forward's training step)."""
    letters = "abcdefghij"
    ins, outs = letters[:n_in], letters[n_in:kernel.ndim]
    lead = x.shape[:x.ndim - n_in]
    y = jnp.einsum(f"x{ins},{ins}{outs}->x{outs}", x.reshape(-1, *x.shape[x.ndim - n_in:]), kernel)
    return y.reshape(*lead, *kernel.shape[n_in:])


class Dense(nnx.Module):
    """y = x @ W (+ b) over the last `len(in_shape)` input axes into `out_shape`, via einsum.

    Multi-axis shapes let attention keep heads as their own (shardable) axis: e.g. in (embed,) -> out (heads, kv).
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], names: Names, *, use_bias: bool = True,
                 dtype=jnp.float32, param_dtype=jnp.float32, kernel_init=None, kind: type[nnx.Param] = nnx.Param,
                 rngs: nnx.Rngs):
        self.in_shape, self.out_shape, self.dtype = tuple(in_shape), tuple(out_shape), dtype
        self.names = tuple(names)  # logical axes of the kernel: inputs, then outputs
        # Default: LeCun normal with fan-in over every input axis (equal to lecun_normal for a 2-D kernel). `kind`
        # is the weights' variable type (a trainer filter can select it, e.g. a projection trained beside LoRA).
        kernel_init = kernel_init or nnx.initializers.variance_scaling(
            1.0, "fan_in", "truncated_normal", in_axis=tuple(range(len(in_shape))),
            out_axis=tuple(range(len(in_shape), len(in_shape) + len(out_shape))))
        self.kernel = annotated_param(rngs, kernel_init, (*in_shape, *out_shape), names, param_dtype, kind=kind)
        self.bias = annotated_param(rngs, nnx.initializers.zeros_init(), out_shape, names[len(in_shape):], param_dtype,
                                    kind=kind) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = contract(x.astype(self.dtype), self.kernel[...].astype(self.dtype), len(self.in_shape))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, statistics in fp32."""

    def __init__(self, dim: int, *, epsilon: float = 1e-6, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.epsilon, self.dtype = epsilon, dtype
        self.scale = annotated_param(rngs, nnx.initializers.ones_init(), (dim,), ("embed",), param_dtype)
        self.bias = annotated_param(rngs, nnx.initializers.zeros_init(), (dim,), ("embed",), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]
        return y.astype(self.dtype)


class RMSNorm(nnx.Module):
    """Root-mean-square norm over the last axis (no mean, no bias), statistics in fp32: T5's layer norm and Qwen3's
    RMSNorm. `names` is the scale's logical axis ("kv" for Qwen3's per-head query/key norm)."""

    def __init__(self, dim: int, *, epsilon: float = 1e-6, names: Names = ("embed",), dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.epsilon, self.dtype = epsilon, dtype
        self.scale = annotated_param(rngs, nnx.initializers.ones_init(), (dim,), names, param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.epsilon)
        return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


class Embed(nnx.Module):
    """Embedding table [num, dim] sharded as ('vocab', 'embed'); `attend` gives tied output logits."""

    def __init__(self, num: int, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, stddev: float = 0.02,
                 names: Names = ("vocab", "embed"), rngs: nnx.Rngs):
        self.dtype = dtype
        self.embedding = annotated_param(rngs, nnx.initializers.normal(stddev), (num, dim), names, param_dtype)

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        return contract(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T, 1)


def apply_dropout(x: jax.Array, keep: jax.Array | None, rate: float) -> jax.Array:
    """Inverted dropout with a given boolean keep mask: kept elements scaled by 1 / (1 - rate), the rest zero."""
    return x if keep is None else jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class Dropout(nnx.Module):
    """Inverted dropout whose keep mask is a counter-based hash of each element's index, seeded from the key.

    One 64-bit seed is drawn from the `dropout` stream; element (row, col) keeps when
    fmix32(fmix32(row ^ s0) ^ (col * golden + s1)) >= rate * 2**32 (fmix32: MurmurHash3's finaliser). Threefry bits
    per element cost ~6x more on XLA:CPU (181 vs 29 ms for a [256, 80, 1024] mask) and were 10% of a TIGER training
    step. The keep probability is exact to 2**-32; masks depend only on the key and the shape, not on the sharding.
    """

    def __init__(self, rate: float):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        keep = self.keep_mask(x.shape, deterministic=deterministic, rngs=rngs)
        return apply_dropout(x, keep, self.rate)

    def keep_mask(self, shape: tuple[int, ...], *, deterministic: bool, rngs: nnx.Rngs | None = None
                  ) -> jax.Array | None:
        """The boolean mask of kept elements for an array of `shape`; None when nothing is dropped."""
        if deterministic or self.rate == 0.0:
            return None
        if rngs is None:
            raise ValueError("Dropout needs rngs (with a 'dropout' stream) when deterministic=False")
        return hashed_keep_mask(rngs.dropout(), tuple(shape), self.rate)


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 with full avalanche."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def hashed_keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """Boolean keep mask of `shape` (each element kept with probability 1 - rate) from a counter-based hash."""
    full = shape or (1,)  # a scalar's mask is one element
    lead, last = full[:-1], full[-1]
    if math.prod(lead) >= 2 ** 32 or last >= 2 ** 32:
        raise ValueError(f"dropout mask of shape {shape}: more than 2**32 rows or columns")
    seed = jax.random.bits(key, (2,), jnp.uint32)
    row = jnp.zeros(lead, jnp.uint32)
    for axis, size in enumerate(lead):  # the row's flat index over the leading axes
        row = row * jnp.uint32(size) + jax.lax.broadcasted_iota(jnp.uint32, lead, axis)
    col = jax.lax.broadcasted_iota(jnp.uint32, (last,), 0)
    hashed = _fmix32(_fmix32(row ^ seed[0])[..., None] ^ (col * jnp.uint32(0x9E3779B9) + seed[1]))
    return (hashed >= jnp.uint32(min(round(rate * 2 ** 32), 2 ** 32 - 1))).reshape(shape)


class FeedForward(nnx.Module):
    """Position-wise MLP: Dense(embed->mlp), activation, dropout, Dense(mlp->embed)."""

    def __init__(self, dim: int, hidden: int, *, activation: str = "gelu", dropout: float = 0.0, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.up = Dense((dim,), (hidden,), ("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.down = Dense((hidden,), (dim,), ("mlp", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.activation = {"gelu": jax.nn.gelu, "relu": jax.nn.relu}[activation]
        self.dropout = Dropout(dropout)

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        h = self.dropout(self.activation(self.up(x)), deterministic=deterministic, rngs=rngs)
        return self.down(h)


class Attention(nnx.Module):
    """Multi-head self-attention with heads as a shardable axis; `mask` is [B, 1|H, Q, K] boolean (True = attend)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, *, dropout: float = 0.0, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # Query, key and value in one matmul (x is read once). Biases for query and value only: a key bias shifts
        # every score of a query by the same q.b, which softmax cancels, so its gradient is mathematically zero and
        # in practice rounding noise that Adam would turn into lr-sized random steps.
        self.qkv = Dense((dim,), (3, num_heads, head_dim), ("embed", None, "heads", "kv"), use_bias=False, **kw)
        self.query_bias = annotated_param(rngs, nnx.initializers.zeros_init(), (num_heads, head_dim),
                                          ("heads", "kv"), param_dtype)
        self.value_bias = annotated_param(rngs, nnx.initializers.zeros_init(), (num_heads, head_dim),
                                          ("heads", "kv"), param_dtype)
        self.out = Dense((num_heads, head_dim), (dim,), ("heads", "kv", "embed"), **kw)
        self.dropout = Dropout(dropout)
        self.dtype = dtype

    def __call__(self, x: jax.Array, mask: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None = None,
                 last_query_only: bool = False) -> jax.Array:
        """[B, L, dim] -> [B, L, dim]; with `last_query_only`, only the last position attends: [B, 1, dim]."""
        qkv = self.qkv(x)  # [B, L, 3, H, D]
        q = qkv[..., 0, :, :] + self.query_bias[...].astype(self.dtype)
        k = qkv[..., 1, :, :]
        v = qkv[..., 2, :, :] + self.value_bias[...].astype(self.dtype)
        if last_query_only:
            q, mask = q[:, -1:], mask[..., -1:, :]
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        weights = self.dropout(weights, deterministic=deterministic, rngs=rngs)
        return self.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v))


def causal_padding_mask(tokens: jax.Array, pad: int = 0) -> jax.Array:
    """[B, 1, L, L]: query i attends to keys j <= i that are not padding (a padded query attends to itself)."""
    length = tokens.shape[1]
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))
    valid = tokens != pad
    mask = causal[None, :, :] & valid[:, None, :]
    mask = mask | jnp.eye(length, dtype=bool)[None]  # keeps softmax finite on all-padding rows
    return mask[:, None, :, :]
