"""T5 in NNX: the encoder stack (HF `T5EncoderModel`) for text embeddings, and blocks the TIGER encoder-decoder
reuses (decoder stacks: causal self-attention with unidirectional relative position buckets + cross-attention).

T5 conventions kept here: a shared token embedding; RMS layer norms before each sub-layer and after the stack;
unscaled attention scores (the 1/sqrt(d) is folded into the initialisation) plus a learned relative position bias
that the first layer owns in HF checkpoints and every layer of the stack adds (we hold it on the stack); feed-forward
`relu` (T5 v1.0) or `gated-gelu` (T5 v1.1 / Flan-T5, tanh GELU); no biases anywhere. Dropout sits where HF's does
(embeddings, attention weights, feed-forward hidden, each residual branch, final norm) for training.

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
from jaxrec.nn.attention import (MultiHeadAttention, RelativePositionBias, causal_mask, padding_mask,
                                 segment_mask)
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
                       dropout=config.dropout_rate, **kw)
        self.dropout = Dropout(config.dropout_rate)

    def __call__(self, x: jax.Array, mask: jax.Array, position_bias: jax.Array, *,
                 encoded: jax.Array | None = None, encoded_mask: jax.Array | None = None,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        kw = dict(deterministic=deterministic, rngs=rngs)
        h = self.self_attention(self.self_attention_norm(x), mask, bias=position_bias, **kw)
        x = x + self.dropout(h, **kw)
        if self.cross_attention is not None:
            h = self.cross_attention(self.cross_attention_norm(x), encoded_mask, context=encoded, **kw)
            x = x + self.dropout(h, **kw)
        return x + self.dropout(self.mlp(self.mlp_norm(x), **kw), **kw)


class T5Stack(nnx.Module):
    """A stack of T5 blocks with its relative position bias and final norm; embeddings are passed in (shared).

    Encoder: bidirectional buckets, padding mask. Decoder: unidirectional buckets, causal mask, cross-attention.
    """

    def __init__(self, config: T5Config, *, decoder: bool = False, rngs: nnx.Rngs):
        self.decoder = decoder
        num_layers = (config.num_decoder_layers or config.num_layers) if decoder else config.num_layers
        self.relative_bias = RelativePositionBias(
            config.num_heads, bidirectional=not decoder, num_buckets=config.relative_attention_num_buckets,
            max_distance=config.relative_attention_max_distance, param_dtype=jnp.dtype(config.param_dtype),
            rngs=rngs)
        self.blocks = nnx.List([T5Block(config, cross_attention=decoder, rngs=rngs) for _ in range(num_layers)])
        self.final_norm = RMSNorm(config.d_model, epsilon=config.layer_norm_epsilon, dtype=jnp.dtype(config.dtype),
                                  param_dtype=jnp.dtype(config.param_dtype), rngs=rngs)
        self.dropout = Dropout(config.dropout_rate)

    def __call__(self, x: jax.Array, attention_mask: jax.Array, *, encoded: jax.Array | None = None,
                 encoded_mask: jax.Array | None = None, segment_ids: jax.Array | None = None,
                 deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Embedded tokens [B, L, d] with mask [B, L] (1 = real) -> [B, L, d]; a decoder also attends over
        `encoded` [B, S, d] with `encoded_mask` [B, S]. An encoder given `segment_ids` (packed rows, 0 = padding)
        lets each packed sequence attend to itself only; the relative bias needs no per-sequence positions."""
        kw = dict(deterministic=deterministic, rngs=rngs)
        length = x.shape[1]
        if self.decoder:
            if encoded is None or encoded_mask is None:
                raise ValueError("a T5 decoder stack needs `encoded` and `encoded_mask`")
            mask, cross_mask = causal_mask(attention_mask), padding_mask(encoded_mask)
        elif segment_ids is not None:
            mask, cross_mask = segment_mask(segment_ids), None
        else:
            mask, cross_mask = padding_mask(attention_mask), None
        position_bias = self.relative_bias(length, length)
        x = self.dropout(x, **kw)
        for block in self.blocks:
            x = block(x, mask, position_bias, encoded=encoded, encoded_mask=cross_mask, **kw)
        return self.dropout(self.final_norm(x), **kw)


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
