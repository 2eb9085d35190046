"""Qwen3-style decoder-only transformer in NNX (HF `Qwen3Model` / `Qwen3ForCausalLM`), loadable from a checkpoint.

Pre-RMSNorm blocks of grouped-query causal self-attention (per-head query/key RMSNorm, RoPE) and a SwiGLU MLP; final
RMSNorm; logits from the tied embedding or a separate LM head (`tie_word_embeddings`). The config flags that tell
Qwen3 apart (`qk_norm`, `qkv_bias`, `out_bias`) also describe Qwen2 (qkv biases, no qk-norm) and Llama (optional
biases, no qk-norm), which load through the same key map.

Cached decoding for the shared beam search (`beam_decoder`): the prompt is prefilled once per row (its keys and
values, RoPE-rotated at positions 0..P-1, are shared by the row's beams), and each beam keeps a KV cache of its own
decoded positions P, P+1, ...; every step's log-probabilities equal the full forward's (tested, and greedy
generations equal transformers' `generate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrec.models import hf_loading
from jaxrec.models.hf_loading import FLAT, LINEAR, KeyRule, Linear, ignore
from jaxrec.nn.attention import (BeamKeys, MultiHeadAttention, beam_cache_length, causal_mask, empty_beam_cache,
                                 heads_first, resize_beam_cache, segment_mask, segment_positions, write_beam_cache)
from jaxrec.nn.layers import Dense, Embed, RMSNorm
from jaxrec.nn.mlp import MLP
from jaxrec.nn.pooling import sentence_embeddings

MODEL_TYPES = ("qwen3", "qwen2", "llama")

# The paper's LLM-as-RS sizes: Qwen3 shapes from the released config.json files (vocabulary 151,936, RoPE theta 1e6).
# Exact totals from `count_parameters`: 0.596B, 1.721B, 4.022B, 8.191B, 14.768B (model cards: 0.6B, 1.7B, 4.0B,
# 8.2B, 14.8B; non-embedding 0.44B, 1.4B, 3.6B, 6.95B, 13.2B).
QWEN3_SHAPES: dict[str, dict[str, int | bool]] = {
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_layers=28, num_heads=16, num_kv_heads=8,
                       head_dim=128, tie_word_embeddings=True),
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_layers=28, num_heads=16, num_kv_heads=8,
                       head_dim=128, tie_word_embeddings=True),
    "qwen3-4b": dict(hidden_size=2560, intermediate_size=9728, num_layers=36, num_heads=32, num_kv_heads=8,
                     head_dim=128, tie_word_embeddings=True),
    "qwen3-8b": dict(hidden_size=4096, intermediate_size=12288, num_layers=36, num_heads=32, num_kv_heads=8,
                     head_dim=128, tie_word_embeddings=False),
    "qwen3-14b": dict(hidden_size=5120, intermediate_size=17408, num_layers=40, num_heads=40, num_kv_heads=8,
                      head_dim=128, tie_word_embeddings=False),
}
QWEN3_VOCAB = 151_936


@dataclasses.dataclass(frozen=True)
class QwenConfig:
    vocab_size: int
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_layers: int = 28
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40_960
    hidden_act: str = "silu"
    tie_word_embeddings: bool = True
    lm_head: bool = True  # False for a base-model checkpoint (HF `Qwen3Model`) with untied embeddings
    qk_norm: bool = True  # Qwen3: RMSNorm of each query/key head before RoPE
    qkv_bias: bool = False  # Qwen2: True
    out_bias: bool = False
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")

    @classmethod
    def from_hf(cls, config: Mapping[str, Any], **overrides) -> QwenConfig:
        """From a HF config.json of model_type qwen3 (or qwen2 / llama). Only plain RoPE and full attention are
        implemented; rope scaling or sliding-window attention raise."""
        model_type = config.get("model_type")
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not a Qwen3-style decoder; expected one of {MODEL_TYPES}")
        rope = dict(config.get("rope_parameters") or {})  # transformers 5; older configs: rope_theta, rope_scaling
        scaling = rope.get("rope_type", "default") if rope else (config.get("rope_scaling") or {}).get(
            "rope_type", (config.get("rope_scaling") or {}).get("type", "default"))
        if scaling != "default":
            raise ValueError(f"RoPE type {scaling!r} is not supported (only plain RoPE)")
        if config.get("mlp_bias"):
            raise ValueError("MLP biases (mlp_bias=true) are not supported")
        if config.get("use_sliding_window"):
            raise ValueError("sliding-window attention (use_sliding_window=true) is not supported")
        heads = config["num_attention_heads"]
        architectures = config.get("architectures") or ["ForCausalLM"]
        attention_bias = bool(config.get("attention_bias", model_type == "qwen2"))
        return cls(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                   intermediate_size=config["intermediate_size"], num_layers=config["num_hidden_layers"],
                   num_heads=heads, num_kv_heads=config.get("num_key_value_heads") or heads,
                   head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                   rms_norm_eps=config.get("rms_norm_eps", 1e-6),
                   rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10_000.0))),
                   max_position_embeddings=config.get("max_position_embeddings", 40_960),
                   hidden_act=config.get("hidden_act", "silu"),
                   tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                   lm_head=any(name.endswith("ForCausalLM") for name in architectures),
                   qk_norm=model_type == "qwen3", qkv_bias=attention_bias or model_type == "qwen2",
                   out_bias=attention_bias and model_type != "qwen2", **overrides)


class DecoderLayer(nnx.Module):
    """x = x + attention(norm(x)); x = x + mlp(norm(x))."""

    def __init__(self, config: QwenConfig, rngs: nnx.Rngs):
        kw = dict(dtype=jnp.dtype(config.dtype), param_dtype=jnp.dtype(config.param_dtype), rngs=rngs)
        h = config.hidden_size
        self.attention_norm = RMSNorm(h, epsilon=config.rms_norm_eps, **kw)
        self.attention = MultiHeadAttention(
            h, config.num_heads, config.head_dim, num_kv_heads=config.num_kv_heads, qkv_bias=config.qkv_bias,
            out_bias=config.out_bias, qk_norm_epsilon=config.rms_norm_eps if config.qk_norm else None,
            rope_theta=config.rope_theta, **kw)
        self.mlp_norm = RMSNorm(h, epsilon=config.rms_norm_eps, **kw)
        self.mlp = MLP(h, config.intermediate_size, activation_name=config.hidden_act, gated=True, **kw)

    def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array, *, return_kv: bool = False
                 ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """[B, L, hidden] -> [B, L, hidden]; with `return_kv` also the attention's (keys, values) [B, L, KVH, D]."""
        normed = self.attention_norm(x)
        kv = self.attention.project_kv(normed, positions) if return_kv else None
        x = x + self.attention(normed, mask, positions=positions, kv=kv)
        x = x + self.mlp(self.mlp_norm(x))
        return (x, kv) if return_kv else x

    def decode_step(self, x: jax.Array, position: jax.Array, step: jax.Array, cache: tuple[jax.Array, jax.Array],
                    own_mask: jax.Array, prefix: BeamKeys) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """One decoded position of K beams per row: x [B, K, hidden] at sequence `position`, its keys/values written
        into the beam's cache (`empty_beam_cache` layout) at index `step`; attends to the prompt (`prefix`) and
        the beam's own decoded positions."""
        normed = self.attention_norm(x)
        cache = write_beam_cache(cache, *self.attention.project_kv(normed, jnp.full((x.shape[1],), position)), step)
        x = x + self.attention.attend_beams(normed, shared=prefix, own=(*cache, own_mask, None), position=position)
        return x + self.mlp(self.mlp_norm(x)), cache


class Qwen(nnx.Module):
    def __init__(self, config: QwenConfig, *, rngs: nnx.Rngs):
        self.config = config
        kw = dict(dtype=jnp.dtype(config.dtype), param_dtype=jnp.dtype(config.param_dtype), rngs=rngs)
        self.tokens = Embed(config.vocab_size, config.hidden_size, **kw)
        self.layers = nnx.List([DecoderLayer(config, rngs) for _ in range(config.num_layers)])
        self.final_norm = RMSNorm(config.hidden_size, epsilon=config.rms_norm_eps, **kw)
        untied = config.lm_head and not config.tie_word_embeddings
        self.lm_head = Dense((config.hidden_size,), (config.vocab_size,), ("embed", "vocab"), use_bias=False,
                             **kw) if untied else None

    def hidden_states(self, input_ids: jax.Array, attention_mask: jax.Array,
                      positions: jax.Array | None = None, *, segment_ids: jax.Array | None = None,
                      return_kv: bool = False, input_embeddings: jax.Array | None = None
                      ) -> jax.Array | tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
        """[B, L] ids and mask (1 = real token) -> [B, L, hidden] final-normed states. `positions` [B, L] default
        to 0..L-1 (as HF without position_ids; RoPE only sees differences, so left padding is harmless). With
        `segment_ids` (packed rows, 0 = padding) each packed sequence attends causally to itself only.
        `return_kv` also returns every layer's (keys, values) [B, L, KVH, D] (a prefill). `input_embeddings`
        [B, L, hidden] are added to the token embeddings (e.g. projected collaborative-filtering vectors)."""
        x = self.tokens(input_ids)
        if input_embeddings is not None:
            x = x + input_embeddings.astype(x.dtype)
        if segment_ids is not None:
            mask = segment_mask(segment_ids, causal=True)
            positions = segment_positions(segment_ids) if positions is None else positions
        else:
            mask = causal_mask(attention_mask)
        positions = jnp.arange(input_ids.shape[1]) if positions is None else positions
        kvs = []
        for layer in self.layers:
            x = layer(x, mask, positions, return_kv=return_kv)
            if return_kv:
                x, kv = x
                kvs.append(kv)
        return (self.final_norm(x), kvs) if return_kv else self.final_norm(x)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """[..., hidden] -> [..., vocab] fp32 logits from the LM head or the tied embedding."""
        if self.lm_head is not None:
            return self.lm_head(hidden).astype(jnp.float32)
        if not self.config.tie_word_embeddings:
            raise ValueError("this checkpoint is a base model with untied embeddings and no LM head: no logits")
        return self.tokens.attend(hidden).astype(jnp.float32)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
                 positions: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(hidden states [B, L, hidden], logits [B, L, vocab] fp32)."""
        hidden = self.hidden_states(input_ids, attention_mask, positions)
        return hidden, self.logits(hidden)

    def beam_decoder(self, prompt_ids: jax.Array, prompt_mask: jax.Array, max_new_tokens: int, *,
                     input_embeddings: jax.Array | None = None
                     ) -> tuple[Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]], Any]:
        """(step_fn, initial state [B]-leading) for `beam_search` over at most `max_new_tokens` positions after
        the (left-padded) prompt [B, P], which is prefilled here once per row.

        The first token fed to step_fn (beam_search's `start_token`) is the prompt's last token, which the caller
        keeps out of `prompt_ids` (prompt templates end with a fixed token, e.g. the one opening the answer).
        step_fn(state, tokens [B, K], step) -> (log-probs [B, K, vocab] of the token after `tokens`, new state).
        `input_embeddings` [B, P, hidden] are added to the prompt's token embeddings (`hidden_states`)."""
        _, prefix = self.hidden_states(prompt_ids, prompt_mask, return_kv=True, input_embeddings=input_embeddings)
        prefix = [heads_first(kv) for kv in prefix]
        batch, prefix_length = prompt_ids.shape
        attention = self.layers[0].attention
        cache = tuple(empty_beam_cache(batch, attention.num_kv_heads, max_new_tokens, attention.head_dim,
                                       attention.dtype) for _ in self.layers)

        def step_fn(state, tokens: jax.Array, step: jax.Array) -> tuple[jax.Array, Any]:
            x = self.tokens(tokens)
            # The cache's current length: beam search grows it in phases.
            own_mask = (jnp.arange(beam_cache_length(state[0])) <= step)[None, None, :]
            new_state = []
            for layer, layer_prefix, layer_cache in zip(self.layers, prefix, state):
                x, layer_cache = layer.decode_step(x, prefix_length + step, step, layer_cache, own_mask,
                                                   (*layer_prefix, prompt_mask, None))
                new_state.append(layer_cache)
            return jax.nn.log_softmax(self.logits(self.final_norm(x)), axis=-1), tuple(new_state)

        return step_fn, cache

    def embed(self, input_ids: jax.Array, attention_mask: jax.Array, *, pooling: str = "mean",
              normalize: bool = True, segment_ids: jax.Array | None = None, num_segments: int = 0) -> jax.Array:
        """[B, hidden] fp32 sequence embeddings: final states pooled over the mask, optionally L2-normalised;
        [B, num_segments, hidden] for packed rows (`segment_ids`)."""
        hidden = self.hidden_states(input_ids, attention_mask, segment_ids=segment_ids)
        return sentence_embeddings(hidden, attention_mask, pooling=pooling, normalize=normalize,
                                   segment_ids=segment_ids, num_segments=num_segments)


def resize_beam_state(state: tuple[tuple[jax.Array, jax.Array], ...], length: int
                      ) -> tuple[tuple[jax.Array, jax.Array], ...]:
    """`beam_search`'s `resize_state` for `Qwen.beam_decoder`'s state (one KV cache per layer)."""
    return tuple(resize_beam_cache(cache, length) for cache in state)


def key_map(config: QwenConfig) -> list[KeyRule]:
    """HF names (with the `model.` prefix of `*ForCausalLM` checkpoints, or without, as `Qwen3Model` saves them)."""
    p = r"(?:model\.)?"
    layer = p + r"layers\.(\d+)\."
    target = "layers.{0}."
    rules = [
        KeyRule(p + r"embed_tokens\.weight", "tokens.embedding"),
        KeyRule(p + r"norm\.weight", "final_norm.scale"),
        KeyRule(layer + r"input_layernorm\.weight", target + "attention_norm.scale"),
        KeyRule(layer + r"post_attention_layernorm\.weight", target + "mlp_norm.scale"),
        KeyRule(layer + r"self_attn\.o_proj\.weight", target + "attention.out.kernel", Linear(2)),
        KeyRule(layer + r"mlp\.gate_proj\.weight", target + "mlp.gate.kernel", LINEAR),
        KeyRule(layer + r"mlp\.up_proj\.weight", target + "mlp.up.kernel", LINEAR),
        KeyRule(layer + r"mlp\.down_proj\.weight", target + "mlp.down.kernel", LINEAR),
        ignore(layer + r"self_attn\.rotary_emb\.inv_freq", "RoPE frequencies are computed from rope_theta"),
    ]
    for hf, ours in (("q", "query"), ("k", "key"), ("v", "value")):
        rules.append(KeyRule(layer + rf"self_attn\.{hf}_proj\.weight", target + f"attention.{ours}.kernel", LINEAR))
        if config.qkv_bias:
            rules.append(KeyRule(layer + rf"self_attn\.{hf}_proj\.bias", target + f"attention.{ours}.bias", FLAT))
    if config.out_bias:
        rules.append(KeyRule(layer + r"self_attn\.o_proj\.bias", target + "attention.out.bias"))
    if config.qk_norm:
        rules += [KeyRule(layer + r"self_attn\.q_norm\.weight", target + "attention.query_norm.scale"),
                  KeyRule(layer + r"self_attn\.k_norm\.weight", target + "attention.key_norm.scale")]
    if config.lm_head and not config.tie_word_embeddings:
        rules.append(KeyRule(r"lm_head\.weight", "lm_head.kernel", LINEAR))
    elif config.tie_word_embeddings:
        rules.append(KeyRule(r"lm_head\.weight", "tokens.embedding", tied=True))
    return rules


def load(folder: str | Path, *, dtype: str = "float32", param_dtype: str | None = None) -> Qwen:
    """A `Qwen` with the weights of the HF checkpoint in `folder`."""
    config = QwenConfig.from_hf(hf_loading.read_config(folder), dtype=dtype, param_dtype=param_dtype or dtype)
    return hf_loading.load_pretrained(lambda: Qwen(config, rngs=nnx.Rngs(0)), folder, key_map(config))


def count_parameters(config: QwenConfig, transform: Callable[[Qwen], Any] | None = None) -> dict[str, int]:
    """Exact parameter counts of the model `config` builds ({"total", "embedding", "without_embedding"}, plus
    {"trainable", "frozen"} when `transform` adds LoRA adapters), read from shapes alone: the model is traced with
    one and two layers and the per-layer difference scaled, so even 14B shapes count in milliseconds."""
    from jaxrec.nn.lora import LoRAParam

    def counts(layers: int) -> dict[str, int]:
        def build() -> Qwen:
            model = Qwen(dataclasses.replace(config, num_layers=layers), rngs=nnx.Rngs(0))
            if transform is not None:
                transform(model)
            return model

        abstract = nnx.eval_shape(build)
        size = lambda state: sum(int(np.prod(v.get_value().shape)) for _, v in nnx.to_flat_state(state))  # noqa: E731
        total = size(nnx.state(abstract, nnx.Param))
        lora = size(nnx.state(abstract, LoRAParam))
        return {"total": total, "trainable": lora if transform else total, "frozen": total - lora if transform else 0}

    one, two = counts(1), counts(2)
    result = {key: one[key] + (config.num_layers - 1) * (two[key] - one[key]) for key in one}
    result["embedding"] = config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings or
                                                                     not config.lm_head else 2)
    result["without_embedding"] = result["total"] - result["embedding"]
    return result
