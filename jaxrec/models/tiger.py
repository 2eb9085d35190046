"""TIGER (Rajput et al. 2023) and its decoder-only variant: generative retrieval over Semantic ID tokens.

A user's history of items becomes SID tokens (`jaxrec.models.sid_tokens`); the model generates the next item's
`levels + 1` SID tokens (codes, then the collision digit) and a trie-constrained beam search over every item's SID
turns them into a ranked list of items.

* `architecture="encoder_decoder"` (TIGER / GRID): a T5 encoder over the history tokens; a T5 decoder of
  `levels + 1` steps (start token 0) with cross-attention, trained with teacher forcing.
* `architecture="decoder_only"`: one causal T5 stack (unidirectional relative bias, no cross-attention) over
  history tokens, the separator, then the target tokens; the loss covers the target tokens only.
Both use one embedding table for every token, the shared T5 blocks (relative position bias, RMSNorm, ReLU or
gated-GELU feed-forward, optionally GRID's `mlp_layers=2`: d -> d_ff -> d_ff -> d, without GRID's biases), dropout,
and per-level output heads: level l's head scores only level l's codes (one [d, sum(level_sizes)] kernel whose
column blocks are the heads; the softmax is taken within the level). The query projections are initialised with
T5's 1/sqrt(d_kv) folded in (T5 attention does not scale scores), so training from scratch starts with unit-scale
attention logits.

Decoding: `TIGER.beam_decoder` runs the encoder (or prefills the decoder-only history) once per user and returns a
jittable `step_fn` for `jaxrec.decoding.beam_search`: static shapes, a per-beam self-attention KV cache of
`levels + 1` positions, and cross-attention keys/values (or the prefilled history's) held once per user and shared
by its beams. Step s returns log-probabilities over the whole token vocabulary, -inf outside level s.

Parameter counts (`count_parameters`, exact: it reads the shapes of the module it would build). Table 2 of Liu et
al. 2025 lists ten sizes (`TABLE2_SIZES`). "layers" there is per stack (the encoder and the decoder each have that
many; GRID's configs set both), and no single convention reproduces all ten reported counts: the three d_model=128
rows (3, 4, 7 layers -> 6.7M, 13M, 21M) imply 6.3M parameters per added layer from 3 to 4 layers but 2.7M from 4
to 7. Every parameter counted (embeddings and heads included), 3 x 256 codes + a 256-entry digit, the per-stack
conventions give (ratio to the table, rows in order):
    gated-GELU, 1 hidden layer   1.42 1.05 0.98 0.98 0.66 0.44 0.47 0.59 0.89 1.29   mean |log ratio| 0.335
    ReLU, 1 hidden layer         1.22 0.89 0.80 0.80 0.54 0.36 0.38 0.48 0.72 1.05   0.447
    ReLU, mlp_layers=2 (GRID)    2.78 2.23 2.18 2.23 1.48 1.01 1.08 1.35 2.06 3.01   0.602
(without the embeddings and heads: 0.336, 0.500, 0.569, mostly moving the small rows; "layers" as the total of
both stacks fits the d_model=64 rows with mlp_layers=2 but leaves a 1-layer model without a decoder). `TABLE2_CONVENTION`, the closest,
is gated-GELU with one hidden layer, within a factor 2.3 of every row (tests/test_tiger.py prints the table). GRID's
own recipe (ReLU, mlp_layers=2, the `TIGERConfig` defaults) gives 13.1M for the 4 x 128 row: the paper's and
TIGER's "13M" model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrec.data.splits import LeaveOneOut
from jaxrec.data.types import INVALID_ITEM
from jaxrec.decoding.beam_search import beam_search
from jaxrec.decoding.trie import Trie
from jaxrec.models.sid_tokens import SIDTokens
from jaxrec.models.t5 import T5Config, T5Stack
from jaxrec.nn.attention import heads_first
from jaxrec.nn.layers import Dense, Embed, constant_values, constants
from jaxrec.sid.table import SIDTable
from jaxrec.train.trainer import ModelFamily

ARCHITECTURES = ("encoder_decoder", "decoder_only")


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """One model size of Liu et al. 2025, Table 2 (`layers` per stack)."""

    label: str  # the reported parameter count, e.g. "13M"
    reported: float
    num_layers: int
    d_model: int
    num_heads: int
    d_kv: int
    d_ff: int

    def model_fields(self) -> dict[str, int]:
        """The `TIGERConfig` fields this size sets."""
        return {"num_layers": self.num_layers, "d_model": self.d_model, "num_heads": self.num_heads,
                "d_kv": self.d_kv, "d_ff": self.d_ff}


TABLE2_SIZES: tuple[ModelSize, ...] = (
    ModelSize("336K", 336e3, 1, 64, 3, 64, 512),
    ModelSize("778K", 778e3, 2, 64, 3, 64, 512),
    ModelSize("1.9M", 1.9e6, 5, 64, 3, 64, 512),
    ModelSize("3.3M", 3.3e6, 9, 64, 3, 64, 512),
    ModelSize("6.7M", 6.7e6, 3, 128, 6, 64, 1024),
    ModelSize("13M", 13e6, 4, 128, 6, 64, 1024),
    ModelSize("21M", 21e6, 7, 128, 6, 64, 1024),
    ModelSize("43M", 43e6, 8, 192, 9, 64, 1536),
    ModelSize("88M", 88e6, 9, 320, 15, 64, 2560),
    ModelSize("192M", 192e6, 20, 384, 18, 64, 3072),
)
# The feed-forward under which our exact counts come closest to Table 2 (see the module docstring).
TABLE2_CONVENTION: dict[str, Any] = {"feed_forward_proj": "gated-gelu", "mlp_layers": 1}
TABLE2_LEVEL_SIZES = (256, 256, 256, 256)  # the paper's 3 x 256 codes + collision digit (GRID: 4 x 256 embeddings)


def table2_size(label: str) -> ModelSize:
    for size in TABLE2_SIZES:
        if size.label == label:
            return size
    raise KeyError(f"no Table 2 size {label!r}; sizes: {', '.join(s.label for s in TABLE2_SIZES)}")


@dataclasses.dataclass(frozen=True)
class TIGERConfig:
    """Model and decoding settings. Defaults: GRID's TIGER recipe (4 + 4 layers, d_model 128, 6 heads of 64,
    d_ff 1024, ReLU, mlp_layers 2, dropout 0.1; 13.1M parameters with 4 x 256 SID tokens)."""

    level_sizes: tuple[int, ...]  # from the SID table: codes per level, the collision digit last
    architecture: str = "encoder_decoder"  # "encoder_decoder" | "decoder_only"
    num_layers: int = 4  # per stack
    d_model: int = 128
    num_heads: int = 6
    d_kv: int = 64
    d_ff: int = 1024
    feed_forward_proj: str = "relu"  # "relu" | "gated-gelu" (T5 names)
    mlp_layers: int = 2  # feed-forward hidden layers (1: T5; 2: GRID)
    dropout: float = 0.1
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    max_history: int = 20  # items (TIGER: 20)
    item_separator: bool = False
    user_bins: int = 0  # hashed user tokens (TIGER: 2,000); needs user ids, which `recommend` does not receive
    beam_width: int = 20  # beam_search keeps max(k, beam_width) beams
    constrained: bool = True  # False: search all tokens; beams that spell no item count in invalid_rate@K
    # Embedding rows and head columns rounded up to a multiple of this (unused, never scored), so that
    # tensor-parallel meshes divide the vocabulary axis; 1 keeps the parameter count exact.
    vocab_multiple: int = 1
    dtype: str = "float32"  # compute dtype; weights stay float32

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_sizes", tuple(int(size) for size in self.level_sizes))
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if min(self.num_layers, self.mlp_layers, self.vocab_multiple) < 1:
            raise ValueError(f"num_layers, mlp_layers and vocab_multiple must be >= 1, got {self.num_layers}, "
                             f"{self.mlp_layers}, {self.vocab_multiple}")

    @property
    def layout(self) -> SIDTokens:
        return SIDTokens(self.level_sizes, self.item_separator, self.user_bins)

    def padded(self, size: int) -> int:
        return -(-size // self.vocab_multiple) * self.vocab_multiple

    @property
    def t5(self) -> T5Config:
        return T5Config(vocab_size=self.layout.vocab_size, d_model=self.d_model, d_kv=self.d_kv, d_ff=self.d_ff,
                        num_heads=self.num_heads, num_layers=self.num_layers,
                        relative_attention_num_buckets=self.relative_attention_num_buckets,
                        relative_attention_max_distance=self.relative_attention_max_distance,
                        feed_forward_proj=self.feed_forward_proj, mlp_layers=self.mlp_layers,
                        dropout_rate=self.dropout, dtype=self.dtype)


StepFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]]


class TIGER(nnx.Module):
    """Embedding table, T5 encoder (encoder-decoder only), T5 decoder, per-level heads."""

    def __init__(self, config: TIGERConfig, *, rngs: nnx.Rngs):
        self.config = config
        layout, t5, dtype = config.layout, config.t5, jnp.dtype(config.dtype)
        cross = config.architecture == "encoder_decoder"
        self.embed = Embed(config.padded(layout.vocab_size), config.d_model, dtype=dtype, stddev=1.0, rngs=rngs)
        self.encoder = T5Stack(t5, rngs=rngs) if cross else None
        self.decoder = T5Stack(t5, decoder=True, cross_attention=cross, rngs=rngs)
        self.heads = Dense((config.d_model,), (config.padded(layout.num_code_tokens),), ("embed", "vocab"),
                           use_bias=False, dtype=dtype, rngs=rngs)
        scale = config.d_kv ** -0.5  # T5's initialisation: unscaled scores, 1/sqrt(d_kv) folded into the query
        for stack in (self.encoder, self.decoder):
            for block in stack.blocks if stack is not None else ():
                for attention in (block.self_attention, block.cross_attention):
                    if attention is not None:
                        attention.query.kernel.set_value(attention.query.kernel.get_value() * scale)

    @property
    def cross_attention(self) -> bool:
        return self.encoder is not None

    def target_states(self, history: jax.Array, history_mask: jax.Array, target: jax.Array, *,
                      deterministic: bool = True, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Teacher forcing: history tokens [B, T] (+ mask) and target SID tokens [B, n] -> the states [B, n, d]
        from which target token i is predicted (inputs: the start token, then target tokens before i)."""
        kw = dict(deterministic=deterministic, rngs=rngs)
        batch, n = target.shape
        if self.cross_attention:
            encoded = self.encoder(self.embed(history), history_mask, **kw)
            inputs = jnp.concatenate([jnp.full((batch, 1), SIDTokens.PAD, target.dtype), target[:, :-1]], axis=1)
            return self.decoder(self.embed(inputs), jnp.ones(inputs.shape, bool), encoded=encoded,
                                encoded_mask=history_mask, **kw)
        start = jnp.full((batch, 1), SIDTokens.SEP, history.dtype)
        inputs = jnp.concatenate([history, start, target[:, :-1].astype(history.dtype)], axis=1)
        mask = jnp.concatenate([history_mask, jnp.ones((batch, n), bool)], axis=1)
        return self.decoder(self.embed(inputs), mask, **kw)[:, -n:]

    def level_logits(self, states: jax.Array, levels: jax.Array) -> jax.Array:
        """States [..., d] -> fp32 logits over the code tokens [..., num_code_tokens], -inf outside the level in
        `levels` (broadcast against the leading axes)."""
        layout = self.config.layout
        logits = self.heads(states)[..., :layout.num_code_tokens].astype(jnp.float32)
        code_levels = jnp.asarray(layout.code_levels())
        return jnp.where(code_levels == jnp.asarray(levels)[..., None], logits, -jnp.inf)

    def vocab_log_probs(self, states: jax.Array, levels: jax.Array) -> jax.Array:
        """Log-probabilities over the whole token vocabulary [..., vocab], normalised within the level and -inf
        for every other token (padding, separator, other levels, user tokens)."""
        layout = self.config.layout
        log_probs = jax.nn.log_softmax(self.level_logits(states, levels), axis=-1)
        return jnp.pad(log_probs, [(0, 0)] * (log_probs.ndim - 1) + [(layout.FIRST_CODE, layout.user_bins)],
                       constant_values=-jnp.inf)

    def beam_decoder(self, history: jax.Array, history_mask: jax.Array) -> tuple[StepFn, Any, int]:
        """(step_fn, initial state [B]-leading, start token) for `beam_search`; the encoder (or the decoder-only
        prefill) runs here, once per user.

        step_fn(state, tokens [B, K], step) -> (log-probs [B, K, vocab] of SID position `step`, new state); the
        state is the per-beam self-attention KV cache, per layer (k, v) [B, K, levels + 1, H, D]."""
        n = self.config.layout.tokens_per_item
        cache = self.decoder.init_cache(history.shape[0], n)
        if self.cross_attention:
            encoded = self.encoder(self.embed(history), history_mask)
            context = dict(cross=self.decoder.cross_kv(encoded), cross_mask=history_mask)
            start = SIDTokens.PAD
        else:
            _, prefix = self.decoder(self.embed(history), history_mask, return_kv=True)
            context = dict(prefix=[heads_first(kv) for kv in prefix], prefix_mask=history_mask)
            start = SIDTokens.SEP

        def step_fn(state, tokens: jax.Array, step: jax.Array) -> tuple[jax.Array, Any]:
            states, state = self.decoder.decode_step(self.embed(tokens), step, state, **context)
            return self.vocab_log_probs(states, step), state

        return step_fn, cache, start


def sequence_loss(model: TIGER, history: jax.Array, history_mask: jax.Array, target: jax.Array,
                  weight: jax.Array, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy over the target's SID tokens [B, n] (row weights [B]: 0 for padding rows), each token
    scored within its level; aux["weight"] = number of target tokens."""
    n = target.shape[1]
    states = model.target_states(history, history_mask, target, deterministic=False, rngs=nnx.Rngs(dropout=rng))
    logits = model.level_logits(states, jnp.arange(n))
    # A padding row's PAD target indexes outside its level (a -inf logit): clipped, and its inf loss masked, not
    # multiplied by 0 (inf * 0 = NaN).
    index = jnp.clip(target - SIDTokens.FIRST_CODE, 0, logits.shape[-1] - 1)
    target_logit = jnp.take_along_axis(logits, index[..., None], axis=-1)[..., 0]
    weights = jnp.broadcast_to(weight[:, None], target.shape).astype(jnp.float32)
    per_token = jnp.where(weights > 0, jax.nn.logsumexp(logits, axis=-1) - target_logit, 0.0)
    total = weights.sum()
    return (per_token * weights).sum() / jnp.maximum(total, 1.0), {"weight": total}


class TIGERFamily:
    """The SID token table and the trie of every item's SID, and the `ModelFamily` functions that use them."""

    def __init__(self, config: TIGERConfig, table: SIDTable):
        if tuple(table.level_sizes) != config.level_sizes:
            raise ValueError(f"config level_sizes {config.level_sizes} differ from the SID table's "
                             f"{tuple(table.level_sizes)}")
        if config.user_bins:
            raise ValueError("user tokens (user_bins > 0) need user ids at recommendation time, which the "
                             "Recommender protocol does not pass; set user_bins=0")
        self.config = config
        layout = config.layout
        token_rows = layout.item_token_table(table.codes)
        # Trie sequence i is item i + 1 (table row order). Both reach the compiled programs through the model.
        self.token_rows, self.trie = token_rows, Trie.from_sequences(token_rows[1:], layout.vocab_size)

    def create(self, rngs: nnx.Rngs) -> TIGER:
        """The model, carrying the item token table and the SID trie as `Constant`s (jit arguments)."""
        model = TIGER(self.config, rngs=rngs)
        model.tables = constants({"tokens": jnp.asarray(self.token_rows), "trie": self.trie.device_arrays()})
        return model

    def columns(self, split: LeaveOneOut) -> dict[str, np.ndarray]:
        """TIGER/GRID expansion: every training prefix (at most `max_history` items) and its next item."""
        histories, targets, _ = split.training_examples(self.config.max_history)
        return {"history": histories, "target": targets.astype(np.int32)}

    def loss(self, model: TIGER, batch: dict[str, jax.Array], rng: jax.Array
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        token_table = constant_values(model.tables)["tokens"]
        tokens, mask = self.config.layout.history_tokens(token_table, batch["history"])
        target = batch["target"]
        return sequence_loss(model, tokens, mask, token_table[target], target != 0, rng)

    def recommend(self, model: TIGER, histories: jax.Array, k: int) -> jax.Array:
        """Top-k item ids [B, k] by beam search (max(k, beam_width) beams), trie-constrained unless configured
        otherwise; -1 for beams that spell no item."""
        tables = constant_values(model.tables)
        tokens, mask = self.config.layout.history_tokens(tables["tokens"], histories[:, -self.config.max_history:])
        step_fn, state, start = model.beam_decoder(tokens, mask)
        result = beam_search(step_fn, state, tables["trie"], beam_width=max(k, self.config.beam_width),
                             start_token=start, num_steps=self.config.layout.tokens_per_item,
                             constrained=self.config.constrained)
        found = result.valid & (result.sequence_index >= 0)
        return jnp.where(found, result.sequence_index + 1, INVALID_ITEM)[:, :k].astype(jnp.int32)


def family(config: TIGERConfig, table: SIDTable, split: LeaveOneOut | None = None) -> ModelFamily:
    """TIGER as the trainer sees it (`split`, if given, is checked against the table's catalogue)."""
    if split is not None and split.dataset.num_items != table.num_items:
        raise ValueError(f"the SID table covers {table.num_items} items, the dataset has "
                         f"{split.dataset.num_items}; build the table from this catalogue")
    parts = TIGERFamily(config, table)
    return ModelFamily(name="tiger", create=parts.create, loss=parts.loss,
                       recommend=parts.recommend, training_columns=parts.columns, padded_columns=("history",),
                       history_length=config.max_history)


def count_parameters(config: TIGERConfig) -> dict[str, int]:
    """Exact parameter counts of the model `config` builds, read from the shapes of the module (nothing allocated).

    Keys: embedding (the token table), encoder, decoder (stacks incl. their relative bias and final norm), heads,
    total, without_embedding (total - embedding), stacks (encoder + decoder). Layers of a stack are identical, so
    the module is traced with one and two layers per stack and the per-layer difference scaled (tracing a deep
    model's initialisation costs time quadratic in its depth)."""
    if config.num_layers <= 2:
        return _traced_counts(config)
    one, two = (_traced_counts(dataclasses.replace(config, num_layers=layers)) for layers in (1, 2))
    return {key: one[key] + (config.num_layers - 1) * (two[key] - one[key]) for key in one}


def _traced_counts(config: TIGERConfig) -> dict[str, int]:
    abstract = nnx.eval_shape(lambda: TIGER(config, rngs=nnx.Rngs(0)))
    counts = {"embedding": 0, "encoder": 0, "decoder": 0, "heads": 0}
    component = {"embed": "embedding", "encoder": "encoder", "decoder": "decoder", "heads": "heads"}
    for path, variable in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        counts[component[str(path[0])]] += math.prod(variable.get_value().shape)
    counts["total"] = sum(counts.values())
    counts["without_embedding"] = counts["total"] - counts["embedding"]
    counts["stacks"] = counts["encoder"] + counts["decoder"]
    return counts


def config_entry(model: dict | None = None, **train_overrides) -> dict:
    """A `config.models` entry: every `TIGERConfig` field but the table's level sizes (its defaults, then `model`),
    and the trainer defaults (early stopping on validation recall@10) with `train_overrides`."""
    from jaxrec.config import check_fields, dataclass_defaults
    from jaxrec.train.defaults import train_config

    check_fields(TIGERConfig, model or {}, "TIGER model", exclude=("level_sizes",))
    train = train_config(early_stopping={"metric": "recall@10", "patience": 5})
    train.update(train_overrides)
    return {"family": "tiger", "model": {**dataclass_defaults(TIGERConfig, exclude=("level_sizes",)), **(model or {})},
            "train": train.to_dict()}
