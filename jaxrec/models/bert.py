"""BERT encoder (HF `BertModel`) in NNX, loadable from a Hugging Face checkpoint folder.

Embeddings (word + absolute position + token type, LayerNorm), post-LayerNorm blocks (attention with biases, exact
GELU feed-forward), and sentence embeddings by pooling over the attention mask (all-MiniLM-L6-v2: mean, then L2
normalisation). The pooler (CLS dense + tanh) and pre-training heads are not part of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrec.models import hf_loading
from jaxrec.models.hf_loading import FLAT, LINEAR, KeyRule, Linear, ignore
from jaxrec.nn.attention import MultiHeadAttention, padding_mask, segment_mask, segment_positions
from jaxrec.nn.layers import Embed, LayerNorm
from jaxrec.nn.mlp import MLP
from jaxrec.nn.pooling import sentence_embeddings


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"

    @classmethod
    def from_hf(cls, config: Mapping[str, Any], **overrides) -> BertConfig:
        """From a HF config.json; only absolute position embeddings exist in this implementation."""
        kind = config.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(f"BERT position_embedding_type {kind!r} is not supported (only 'absolute')")
        return cls(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                   num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
                   intermediate_size=config["intermediate_size"],
                   max_position_embeddings=config["max_position_embeddings"],
                   type_vocab_size=config.get("type_vocab_size", 2),
                   layer_norm_eps=config.get("layer_norm_eps", 1e-12), hidden_act=config.get("hidden_act", "gelu"),
                   **overrides)


class Embeddings(nnx.Module):
    def __init__(self, config: BertConfig, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.word = Embed(config.vocab_size, config.hidden_size, **kw)
        self.position = Embed(config.max_position_embeddings, config.hidden_size, names=(None, "embed"), **kw)
        self.token_type = Embed(config.type_vocab_size, config.hidden_size, names=(None, "embed"), **kw)
        self.norm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps, **kw)

    def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, positions: jax.Array) -> jax.Array:
        return self.norm(self.word(input_ids) + self.token_type(token_type_ids) + self.position(positions))


class Layer(nnx.Module):
    """Post-LN block: x = LN(x + attention(x)); x = LN(x + mlp(x))."""

    def __init__(self, config: BertConfig, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        h = config.hidden_size
        self.attention = MultiHeadAttention(h, config.num_heads, h // config.num_heads, qkv_bias=True,
                                            out_bias=True, **kw)
        self.attention_norm = LayerNorm(h, epsilon=config.layer_norm_eps, **kw)
        self.mlp = MLP(h, config.intermediate_size, activation_name=config.hidden_act, gated=False, use_bias=True,
                       **kw)
        self.mlp_norm = LayerNorm(h, epsilon=config.layer_norm_eps, **kw)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = self.attention_norm(x + self.attention(x, mask))
        return self.mlp_norm(x + self.mlp(x))


class Bert(nnx.Module):
    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        if config.hidden_size % config.num_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not divisible by num_heads {config.num_heads}")
        self.config = config
        dtype, param_dtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
        self.embeddings = Embeddings(config, dtype, param_dtype, rngs)
        self.layers = nnx.List([Layer(config, dtype, param_dtype, rngs) for _ in range(config.num_layers)])

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
                 token_type_ids: jax.Array | None = None, *, segment_ids: jax.Array | None = None) -> jax.Array:
        """[B, L] token ids and mask (1 = real token) -> [B, L, hidden] last hidden states. With `segment_ids`
        (packed rows, 0 = padding) each packed sequence attends to itself only, with its own positions 0, 1, ..."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        token_type_ids = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        if segment_ids is None:
            mask, positions = padding_mask(attention_mask), jnp.arange(input_ids.shape[1])[None]
        else:
            mask, positions = segment_mask(segment_ids), segment_positions(segment_ids)
        x = self.embeddings(input_ids, token_type_ids, positions)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def embed(self, input_ids: jax.Array, attention_mask: jax.Array, *, pooling: str = "mean",
              normalize: bool = True, segment_ids: jax.Array | None = None, num_segments: int = 0) -> jax.Array:
        """[B, D] fp32 sentence embeddings: pooled over the mask, L2-normalised (sentence-transformers);
        [B, num_segments, D] for packed rows (`segment_ids`)."""
        hidden = self(input_ids, attention_mask, segment_ids=segment_ids)
        return sentence_embeddings(hidden, attention_mask, pooling=pooling, normalize=normalize,
                                   segment_ids=segment_ids, num_segments=num_segments)


_LN = r"LayerNorm\.(?:weight|gamma)", r"LayerNorm\.(?:bias|beta)"  # old checkpoints name them gamma/beta


def key_map(config: BertConfig) -> list[KeyRule]:
    """HF `BertModel` tensor names (optionally under `bert.`, as in task-head checkpoints) -> our parameters."""
    p = r"(?:bert\.)?"
    layer = p + r"encoder\.layer\.(\d+)\."
    rules = [
        KeyRule(p + r"embeddings\.word_embeddings\.weight", "embeddings.word.embedding"),
        KeyRule(p + r"embeddings\.position_embeddings\.weight", "embeddings.position.embedding"),
        KeyRule(p + r"embeddings\.token_type_embeddings\.weight", "embeddings.token_type.embedding"),
        KeyRule(p + r"embeddings\." + _LN[0], "embeddings.norm.scale"),
        KeyRule(p + r"embeddings\." + _LN[1], "embeddings.norm.bias"),
        KeyRule(layer + r"attention\.output\.dense\.weight", "layers.{0}.attention.out.kernel", Linear(2)),
        KeyRule(layer + r"attention\.output\.dense\.bias", "layers.{0}.attention.out.bias"),
        KeyRule(layer + r"attention\.output\." + _LN[0], "layers.{0}.attention_norm.scale"),
        KeyRule(layer + r"attention\.output\." + _LN[1], "layers.{0}.attention_norm.bias"),
        KeyRule(layer + r"intermediate\.dense\.weight", "layers.{0}.mlp.up.kernel", LINEAR),
        KeyRule(layer + r"intermediate\.dense\.bias", "layers.{0}.mlp.up.bias"),
        KeyRule(layer + r"output\.dense\.weight", "layers.{0}.mlp.down.kernel", LINEAR),
        KeyRule(layer + r"output\.dense\.bias", "layers.{0}.mlp.down.bias"),
        KeyRule(layer + r"output\." + _LN[0], "layers.{0}.mlp_norm.scale"),
        KeyRule(layer + r"output\." + _LN[1], "layers.{0}.mlp_norm.bias"),
        ignore(p + r"embeddings\.(?:position_ids|token_type_ids)", "index buffers (0..max_positions-1, zeros), not "
                                                                   "weights"),
        ignore(p + r"pooler\.dense\.(?:weight|bias)", "the CLS pooler (dense + tanh) is not used by mask pooling"),
        ignore(r"cls\..*", "pre-training heads (masked LM / next sentence), not part of the encoder"),
    ]
    for name in ("query", "key", "value"):
        rules += [KeyRule(layer + rf"attention\.self\.{name}\.weight", f"layers.{{0}}.attention.{name}.kernel",
                          LINEAR),
                  KeyRule(layer + rf"attention\.self\.{name}\.bias", f"layers.{{0}}.attention.{name}.bias", FLAT)]
    return rules


def load(folder: str | Path, *, dtype: str = "float32", param_dtype: str | None = None) -> Bert:
    """A `Bert` with the weights of the HF checkpoint in `folder` (config.json + safetensors)."""
    config = BertConfig.from_hf(hf_loading.read_config(folder), dtype=dtype, param_dtype=param_dtype or dtype)
    return hf_loading.load_pretrained(lambda: Bert(config, rngs=nnx.Rngs(0)), folder, key_map(config))
