"""T5 in NNX: the encoder stack (HF `T5EncoderModel`) for text embeddings, and blocks the TIGER encoder-decoder
reuses (decoder stacks: causal self-attention with unidirectional relative position buckets + cross-attention, or
without cross-attention for a decoder-only model).

T5 conventions kept here: a shared token embedding; RMS layer norms before each sub-layer and after the stack;
unscaled attention scores (the 1/sqrt(d) is folded into the initialisation) plus a learned relative position bias
that the first layer owns in HF checkpoints and every layer of the stack adds (we hold it on the stack); feed-forward
`relu` (T5 v1.0) or `gated-gelu` (T5 v1.1 / Flan-T5, tanh GELU); no biases anywhere. Dropout sits where HF's does
(embeddings, attention weights, feed-forward hidden, each residual branch, final norm) for training.

Cached decoding (`T5Stack.__call__(..., return_kv=True)` to prefill, `T5Stack.decode_step` for one position of K
beams per row) gives the same states as the full causal forward; see `jaxrec.nn.attention.beam_attention`.

Sentence embeddings: mean over the mask (+ optional L2 normalisation). sentence-T5's extra Dense projection
(`2_Dense/` in a sentence-transformers folder) is not loaded; `jaxrec.text.encoders` refuses such folders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrec.models import hf_loading
from jaxrec.models.hf_loading import LINEAR, KeyRule, Linear, ignore
from jaxrec.nn.attention import (BeamKeys, MultiHeadAttention, RelativePositionBias, beam_cache_length, causal_mask,
                                 empty_beam_cache, heads_first, padding_mask, segment_mask, write_beam_cache)
from jaxrec.nn.layers import Dropout, Embed, RMSNorm
from jaxrec.nn.mlp import MLP
from jaxrec.nn.pooling import sentence_embeddings


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_heads: int = 8
    num_layers: int = 6
    num_decoder_layers: int | None = None  # None: as many as the encoder
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"  # "relu" | "gated-gelu" | "<act>" | "gated-<act>" (HF names)
    mlp_layers: int = 1  # hidden layers of the feed-forward (GRID's TIGER: 2, i.e. d -> d_ff -> d_ff -> d)
    dropout_rate: float = 0.0
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        act = self.feed_forward_proj.removeprefix("gated-")
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else act  # HF's special case for Flan-T5

    @classmethod
    def from_hf(cls, config: Mapping[str, Any], **overrides) -> T5Config:
        """From a HF T5 config.json (dropout defaults to 0: these models are loaded for inference)."""
        return cls(vocab_size=config["vocab_size"], d_model=config["d_model"], d_kv=config["d_kv"],
                   d_ff=config["d_ff"], num_heads=config["num_heads"], num_layers=config["num_layers"],
                   num_decoder_layers=config.get("num_decoder_layers"),
                   relative_attention_num_buckets=config.get("relative_attention_num_buckets", 32),
                   relative_attention_max_distance=config.get("relative_attention_max_distance", 128),
                   layer_norm_epsilon=config.get("layer_norm_epsilon", 1e-6),
                   feed_forward_proj=config.get("feed_forward_proj", "relu"), **overrides)


class T5Block(nnx.Module):
    """Pre-norm block: self-attention, (decoder) cross-attention over the encoder states, feed-forward."""

    def __init__(self, config: T5Config, *, cross_attention: bool, rngs: nnx.Rngs):
        kw = dict(dtype=jnp.dtype(config.dtype), param_dtype=jnp.dtype(config.param_dtype), rngs=rngs)
        norm = dict(epsilon=config.layer_norm_epsilon, **kw)
        attention = dict(query_scale=1.0, dropout=config.dropout_rate, **kw)
        d = config.d_model
        self.self_attention_norm = RMSNorm(d, **norm)
        self.self_attention = MultiHeadAttention(d, config.num_heads, config.d_kv, **attention)
        if cross_attention:
            self.cross_attention_norm = RMSNorm(d, **norm)
            self.cross_attention = MultiHeadAttention(d, config.num_heads, config.d_kv, **attention)
        else:
            self.cross_attention_norm = self.cross_attention = None
        self.mlp_norm = RMSNorm(d, **norm)
        self.mlp = MLP(d, config.d_ff, activation_name=config.activation, gated=config.gated,
                       hidden_layers=config.mlp_layers, dropout=config.dropout_rate, **kw)
        self.dropout = Dropout(config.dropout_rate)

    def __call__(self, x: jax.Array, mask: jax.Array, position_bias: jax.Array, *,
                 encoded: jax.Array | None = None, encoded_mask: jax.Array | None = None,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None, return_kv: bool = False
                 ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """[B, L, d] -> [B, L, d]; with `return_kv` also the self-attention keys/values [B, L, H, D] (prefill)."""
        kw = dict(deterministic=deterministic, rngs=rngs)
        normed = self.self_attention_norm(x)
        kv = self.self_attention.project_kv(normed) if return_kv else None
        h = self.self_attention(normed, mask, bias=position_bias, kv=kv, **kw)
        x = x + self.dropout(h, **kw)
        if self.cross_attention is not None:
            h = self.cross_attention(self.cross_attention_norm(x), encoded_mask, context=encoded, **kw)
            x = x + self.dropout(h, **kw)
        x = x + self.dropout(self.mlp(self.mlp_norm(x), **kw), **kw)
        return (x, kv) if return_kv else x

    def decode_step(self, x: jax.Array, step: jax.Array, cache: tuple[jax.Array, jax.Array], own_mask: jax.Array,
                    own_bias: jax.Array, *, prefix: BeamKeys | None = None, cross: BeamKeys | None = None
                    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """One decoded position of K beams per row (inference): x [B, K, d] -> [B, K, d], and the KV cache
        (`empty_beam_cache` layout) with this position's keys/values written at index `step`."""
        normed = self.self_attention_norm(x)
        cache = write_beam_cache(cache, *self.self_attention.project_kv(normed), step)
        x = x + self.self_attention.attend_beams(normed, shared=prefix, own=(*cache, own_mask, own_bias))
        if self.cross_attention is not None:
            x = x + self.cross_attention.attend_beams(self.cross_attention_norm(x), shared=cross)
        return x + self.mlp(self.mlp_norm(x)), cache


class T5Stack(nnx.Module):
    """A stack of T5 blocks with its relative position bias and final norm; embeddings are passed in (shared).

    Encoder: bidirectional buckets, padding mask. Decoder: unidirectional buckets, causal mask, and cross-attention
    unless `cross_attention=False` (a decoder-only model).
    """

    def __init__(self, config: T5Config, *, decoder: bool = False, cross_attention: bool | None = None,
                 rngs: nnx.Rngs):
        self.decoder = decoder
        self.has_cross_attention = decoder if cross_attention is None else cross_attention
        if self.has_cross_attention and not decoder:
            raise ValueError("cross-attention needs a decoder stack")
        num_layers = (config.num_decoder_layers or config.num_layers) if decoder else config.num_layers
        self.relative_bias = RelativePositionBias(
            config.num_heads, bidirectional=not decoder, num_buckets=config.relative_attention_num_buckets,
            max_distance=config.relative_attention_max_distance, param_dtype=jnp.dtype(config.param_dtype),
            rngs=rngs)
        self.blocks = nnx.List([T5Block(config, cross_attention=self.has_cross_attention, rngs=rngs)
                                for _ in range(num_layers)])
        self.final_norm = RMSNorm(config.d_model, epsilon=config.layer_norm_epsilon, dtype=jnp.dtype(config.dtype),
                                  param_dtype=jnp.dtype(config.param_dtype), rngs=rngs)
        self.dropout = Dropout(config.dropout_rate)

    def __call__(self, x: jax.Array, attention_mask: jax.Array, *, encoded: jax.Array | None = None,
                 encoded_mask: jax.Array | None = None, segment_ids: jax.Array | None = None,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None, return_kv: bool = False
                 ) -> jax.Array | tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
        """Embedded tokens [B, L, d] with mask [B, L] (1 = real) -> [B, L, d]; a decoder with cross-attention also
        attends over `encoded` [B, S, d] with `encoded_mask` [B, S]. An encoder given `segment_ids` (packed rows,
        0 = padding) lets each packed sequence attend to itself only; the relative bias needs no per-sequence
        positions. `return_kv` also returns every layer's self-attention (keys, values) [B, L, H, D] (prefill)."""
        kw = dict(deterministic=deterministic, rngs=rngs)
        length = x.shape[1]
        cross_mask = None
        if self.decoder:
            mask = causal_mask(attention_mask)
            if self.has_cross_attention:
                if encoded is None or encoded_mask is None:
                    raise ValueError("a T5 decoder stack with cross-attention needs `encoded` and `encoded_mask`")
                cross_mask = padding_mask(encoded_mask)
        elif segment_ids is not None:
            mask, cross_mask = segment_mask(segment_ids), None
        else:
            mask, cross_mask = padding_mask(attention_mask), None
        position_bias = self.relative_bias(length, length)
        x = self.dropout(x, **kw)
        kvs = []
        for block in self.blocks:
            x = block(x, mask, position_bias, encoded=encoded, encoded_mask=cross_mask, return_kv=return_kv, **kw)
            if return_kv:
                x, kv = x
                kvs.append(kv)
        x = self.dropout(self.final_norm(x), **kw)
        return (x, kvs) if return_kv else x

    def init_cache(self, batch: int, length: int) -> tuple[tuple[jax.Array, jax.Array], ...]:
        """Zero self-attention KV cache for `length` decoded positions, per layer (`empty_beam_cache`)."""
        attention = self.blocks[0].self_attention
        return tuple(empty_beam_cache(batch, attention.num_heads, length, attention.head_dim, attention.dtype)
                     for _ in self.blocks)

    def cross_kv(self, encoded: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        """Every layer's cross-attention (keys, values) [B, H, S, D] (`heads_first`) of the encoder states: once
        per row."""
        return [heads_first(block.cross_attention.project_kv(encoded)) for block in self.blocks]

    def decode_step(self, x: jax.Array, step: jax.Array, cache: tuple[tuple[jax.Array, jax.Array], ...], *,
                    prefix: list[tuple[jax.Array, jax.Array]] | None = None, prefix_mask: jax.Array | None = None,
                    cross: list[tuple[jax.Array, jax.Array]] | None = None, cross_mask: jax.Array | None = None
                    ) -> tuple[jax.Array, tuple[tuple[jax.Array, jax.Array], ...]]:
        """One causal decoding position for K beams per row (inference, no dropout).

        x [B, K, d]: the embedded tokens at decoded position `step` (a traced scalar); `cache` per layer
        (`empty_beam_cache` layout, beam axis added), positions < `step` filled. Decoded positions follow `prefix`
        (per layer (k, v) [B, H, P, D]: `heads_first` of a prefill with `return_kv`, `prefix_mask` [B, P]; a
        decoder-only model's history) and attend over `cross` (per layer from `cross_kv`, `cross_mask` [B, S]) with
        cross-attention. Returns the final-normed states [B, K, d] and the cache with this position written: the
        states equal the full forward's.
        """
        length = beam_cache_length(cache[0])
        own_mask = (jnp.arange(length) <= step)[None, None, :]
        own_bias = self.relative_bias(1, length, query_offset=step)  # decoded keys at prefix_length + t
        prefix_bias = None
        if prefix is not None:
            prefix_length = prefix[0][0].shape[2]
            prefix_bias = self.relative_bias(1, prefix_length, query_offset=prefix_length + step)
        new_cache = []
        for index, block in enumerate(self.blocks):
            shared = None if prefix is None else (*prefix[index], prefix_mask, prefix_bias)
            crossed = None if cross is None else (*cross[index], cross_mask, None)
            x, layer_cache = block.decode_step(x, step, cache[index], own_mask, own_bias, prefix=shared,
                                               cross=crossed)
            new_cache.append(layer_cache)
        return self.final_norm(x), tuple(new_cache)


class T5Encoder(nnx.Module):
    """HF `T5EncoderModel`: shared embedding + encoder stack."""

    def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
        self.config = config
        self.shared = Embed(config.vocab_size, config.d_model, dtype=jnp.dtype(config.dtype),
                            param_dtype=jnp.dtype(config.param_dtype), stddev=1.0, rngs=rngs)
        self.encoder = T5Stack(config, rngs=rngs)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, *, segment_ids: jax.Array | None = None,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        """[B, L] ids and mask -> [B, L, d_model] last hidden states (`segment_ids`: packed rows)."""
        return self.encoder(self.shared(input_ids), attention_mask, segment_ids=segment_ids,
                            deterministic=deterministic, rngs=rngs)

    def embed(self, input_ids: jax.Array, attention_mask: jax.Array, *, pooling: str = "mean",
              normalize: bool = True, segment_ids: jax.Array | None = None, num_segments: int = 0) -> jax.Array:
        """[B, d_model] fp32 sentence embeddings: pooled over the mask, optionally L2-normalised;
        [B, num_segments, d_model] for packed rows (`segment_ids`)."""
        hidden = self(input_ids, attention_mask, segment_ids=segment_ids)
        return sentence_embeddings(hidden, attention_mask, pooling=pooling, normalize=normalize,
                                   segment_ids=segment_ids, num_segments=num_segments)


def stack_key_map(config: T5Config, hf_stack: str, ours: str) -> list[KeyRule]:
    """Rules for one HF stack (`encoder` / `decoder`) into our `T5Stack` at path `ours`. In HF decoder blocks the
    cross-attention is layer 1 and the feed-forward layer 2; in encoder blocks the feed-forward is layer 1."""
    block = rf"{hf_stack}\.block\.(\d+)\.layer\."
    ff = "2" if hf_stack == "decoder" else "1"
    target = ours + ".blocks.{0}."
    rules = [
        KeyRule(rf"{hf_stack}\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
                f"{ours}.relative_bias.embedding"),
        KeyRule(rf"{hf_stack}\.final_layer_norm\.weight", f"{ours}.final_norm.scale"),
        KeyRule(block + r"0\.layer_norm\.weight", target + "self_attention_norm.scale"),
        KeyRule(block + ff + r"\.layer_norm\.weight", target + "mlp_norm.scale"),
        KeyRule(block + ff + r"\.DenseReluDense\.wo\.weight", target + "mlp.down.kernel", LINEAR),
    ]
    if config.gated:
        rules += [KeyRule(block + ff + r"\.DenseReluDense\.wi_0\.weight", target + "mlp.gate.kernel", LINEAR),
                  KeyRule(block + ff + r"\.DenseReluDense\.wi_1\.weight", target + "mlp.up.kernel", LINEAR)]
    else:
        rules.append(KeyRule(block + ff + r"\.DenseReluDense\.wi\.weight", target + "mlp.up.kernel", LINEAR))
    attentions = [("0", "SelfAttention", "self_attention")]
    if hf_stack == "decoder":
        attentions.append(("1", "EncDecAttention", "cross_attention"))
        rules.append(KeyRule(block + r"1\.layer_norm\.weight", target + "cross_attention_norm.scale"))
    for layer, hf_name, name in attentions:
        for hf_proj, proj in (("q", "query"), ("k", "key"), ("v", "value")):
            rules.append(KeyRule(block + rf"{layer}\.{hf_name}\.{hf_proj}\.weight", target + f"{name}.{proj}.kernel",
                                 LINEAR))
        rules.append(KeyRule(block + rf"{layer}\.{hf_name}\.o\.weight", target + f"{name}.out.kernel", Linear(2)))
    return rules


def key_map(config: T5Config, stacks: Sequence[str] = ("encoder",)) -> list[KeyRule]:
    """HF T5 tensor names -> our parameters, for a model holding `shared` and the listed stacks (as attributes of
    the same names). Stacks not listed (the decoder of a full T5 checkpoint) and the LM head are ignored."""
    rules = [KeyRule(r"shared\.weight", "shared.embedding")]
    for stack in ("encoder", "decoder"):
        if stack in stacks:
            rules.append(KeyRule(rf"{stack}\.embed_tokens\.weight", "shared.embedding", tied=True))
            rules += stack_key_map(config, stack, stack)
        else:
            rules.append(ignore(rf"{stack}\..*", f"the {stack} of a full T5 checkpoint; this model has no {stack}"))
    rules.append(ignore(r"lm_head\.weight", "the LM head of a full T5 checkpoint; this model produces states"))
    return rules


def load(folder: str | Path, *, dtype: str = "float32", param_dtype: str | None = None) -> T5Encoder:
    """A `T5Encoder` with the encoder weights of the HF T5 checkpoint in `folder` (encoder-only or full)."""
    config = T5Config.from_hf(hf_loading.read_config(folder), dtype=dtype, param_dtype=param_dtype or dtype)
    return hf_loading.load_pretrained(lambda: T5Encoder(config, rngs=nnx.Rngs(0)), folder, key_map(config))
