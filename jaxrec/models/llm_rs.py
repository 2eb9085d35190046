"""LLM-as-RS: a Qwen3-family decoder reads the titles of a user's history and generates the next item's title under
the catalogue's title trie (the paper's second paradigm), as a `ModelFamily` of the shared trainer.

  * Tokenizer: the checkpoint's, a given folder, or (from scratch) a byte-level BPE trained on the catalogue text,
    saved under `<workdir>/tokenizer` and reused from there (`jaxrec.text.tokenizer`).
  * Training rows: prompt (history titles, most recent last, oldest lines dropped to fit the budget) + target title
    + EOS, left-padded; the loss is the cross-entropy of the target tokens only, computed on the last
    `max_title_tokens + 1` positions (targets end every row), so no full-length vocabulary logits are formed.
  * Recommendation: prompts are built from item ids inside jit (`build_prompts`), prefilled once per user, and the
    shared beam search walks the trie of unique titles + EOS; a title shared by several items names its first item
    (`TitleTable`), and every beam is an existing title. The evaluator's `title_recall@K` / `title_ndcg@K` count
    a hit when the target is any item with the recommended title (plain recall needs the named item itself).
  * Modes: `scratch` (a random model of the configured shape, every weight trained), `full` (every weight of a
    checkpoint trained) and `lora` (adapters on the checkpoint's, or a random model's, projections; only they are
    trained and kept in the optimizer state: about 0.85% of Qwen3-0.6B at the default rank 8 on all seven).
  * Collaborative-filtering injection (`cf_source` / `cf_embeddings`): each history line opens with a slot token
    whose input embedding gets `W . cf[item]` added, `cf` a frozen [num_items + 1, D] item table (an earlier model
    of the run, e.g. SASRec, or a .npy file) and `W` a trained D -> hidden projection (`CFParam`: trained in LoRA
    mode too; zero-initialised, so training starts from the model without CF).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrec.config import ConfigError
from jaxrec.data.splits import LeaveOneOut
from jaxrec.data.types import INVALID_ITEM, Catalog
from jaxrec.decoding.beam_search import beam_search
from jaxrec.decoding.trie import Trie
from jaxrec.models import hf_loading, qwen
from jaxrec.models.qwen import Qwen, QwenConfig
from jaxrec.nn.layers import Dense, constant_values, constants
from jaxrec.nn.lora import DEFAULT_TARGETS, LoRAParam, add_lora
from jaxrec.text.item_text import item_texts
from jaxrec.text.prompts import Prompts, PromptTemplate, TitleTable, build_prompts
from jaxrec.text.tokenizer import TRAINING_RECORD, load_tokenizer, texts_digest, train_tokenizer
from jaxrec.train.trainer import ModelFamily

logger = logging.getLogger(__name__)

MODES = ("scratch", "full", "lora")


@dataclasses.dataclass(frozen=True)
class LLMRSConfig:
    """Model, tokenizer, prompt and decoding settings. The shape fields apply from scratch; a checkpoint brings
    its own."""

    mode: str = "scratch"  # "scratch" | "full" | "lora"
    checkpoint: str = ""  # a Hugging Face Qwen3/Qwen2/Llama folder ("full"; "lora" adapts it, or a random model)
    tokenizer: str = ""  # a tokenizer folder; "": the checkpoint's, or one trained on the catalogue (scratch)
    tokenizer_vocab_size: int = 2048
    shape: str = ""  # a paper size from `qwen.QWEN3_SHAPES` ("qwen3-0.6b" ... "qwen3-14b"): replaces the fields below
    hidden_size: int = 64
    intermediate_size: int = 192
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    rope_theta: float = 10_000.0
    tie_word_embeddings: bool = True
    dtype: str = "float32"  # compute dtype
    prompt: dict = dataclasses.field(default_factory=lambda: dataclasses.asdict(PromptTemplate()))
    max_history: int = 20  # items handed to the prompt builder (the token budget may keep fewer)
    beam_width: int = 20
    length_normalization: float = 0.0
    constrained: bool = True  # False: search the whole vocabulary until EOS; non-titles count in invalid_rate@K
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = DEFAULT_TARGETS  # ours or the Hugging Face names (q_proj, ..., down_proj)
    cf_source: str = ""  # CF injection from an earlier model of `config.models` with item embeddings (e.g. "sasrec")
    cf_embeddings: str = ""  # ... or from a .npy [num_items + 1, D] item table (row 0: padding)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "full" and not self.checkpoint:
            raise ValueError("mode 'full' fine-tunes a checkpoint: set `checkpoint` to a Hugging Face folder")
        if self.mode == "scratch" and self.checkpoint:
            raise ValueError("mode 'scratch' trains a new model; leave `checkpoint` empty or use mode 'full'")
        if self.shape and self.shape not in qwen.QWEN3_SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; known: {sorted(qwen.QWEN3_SHAPES)}")
        if self.cf_source and self.cf_embeddings:
            raise ValueError("set at most one of `cf_source` (a model of the run) and `cf_embeddings` (a .npy file)")

    @property
    def cf(self) -> bool:
        return bool(self.cf_source or self.cf_embeddings)


class CFParam(nnx.Param):
    """The CF projection's weights: trained in every mode (beside the adapters under LoRA)."""


def cf_table(config: LLMRSConfig, num_items: int, item_embeddings: dict[str, np.ndarray]) -> np.ndarray | None:
    """The frozen CF item table [num_items + 1, D] float32 that `config` names (None without CF): the embeddings
    of the earlier model `cf_source` (`item_embeddings`: the run's, by model name) or the `cf_embeddings` file."""
    if config.cf_source:
        if config.cf_source not in item_embeddings:
            raise ValueError(f"cf_source {config.cf_source!r}: no earlier model of the run provides item embeddings "
                             f"(models with them so far: {sorted(item_embeddings)}); list it before this model")
        table, field = item_embeddings[config.cf_source], "cf_source"
    elif config.cf_embeddings:
        table, field = np.load(config.cf_embeddings, allow_pickle=False), "cf_embeddings"
    else:
        return None
    table = np.asarray(table, np.float32)
    if table.ndim != 2 or table.shape[0] != num_items + 1:
        raise ValueError(f"{field}: item embeddings of shape {table.shape}; expected [num_items + 1 = "
                         f"{num_items + 1}, D] (row 0: padding)")
    return table


def catalogue_tokenizer(config: LLMRSConfig, catalog: Catalog, workdir: Path, template: PromptTemplate):
    """The tokenizer a run uses: the configured folder, the checkpoint's, or a BPE trained on the catalogue's item
    texts (and the template's fixed strings), saved in `<workdir>/tokenizer` and reused when present and trained
    for this vocabulary size and these texts (a `ConfigError` otherwise)."""
    if config.tokenizer:
        return load_tokenizer(config.tokenizer)
    if config.checkpoint:
        return load_tokenizer(config.checkpoint)
    folder = workdir / "tokenizer"
    catalogue_texts, _ = item_texts(catalog, template.item_text, ". ", template.empty_text)
    texts = [*catalogue_texts, template.header, template.answer]  # the template's fixed strings too
    if (folder / "tokenizer.json").exists():
        record_file = folder / TRAINING_RECORD
        record = json.loads(record_file.read_text()) if record_file.exists() else {}
        expected = {"vocab_size": config.tokenizer_vocab_size, "texts_sha256": texts_digest(texts)}
        for field, value in expected.items():
            if field in record and record[field] != value:
                raise ConfigError(f"{record_file}: the tokenizer in this run directory was trained for another "
                                  f"{'vocabulary size' if field == 'vocab_size' else 'catalogue or prompt template'} "
                                  f"({field} {record[field]!r}, this config: {value!r}); use another workdir")
        return load_tokenizer(folder)
    logger.info(f"training a byte-level BPE of {config.tokenizer_vocab_size} tokens on {len(catalogue_texts)} item "
                f"texts")
    return train_tokenizer(texts, config.tokenizer_vocab_size, folder)


class LLMRSFamily:
    """The prompt pieces, the title trie and the `ModelFamily` functions of one run."""

    def __init__(self, config: LLMRSConfig, catalog: Catalog, workdir: Path, cf: np.ndarray | None = None):
        if config.cf != (cf is not None):
            raise ValueError("the CF item table is given exactly when the config sets cf_source or cf_embeddings")
        self.config, self.cf = config, cf
        template = PromptTemplate.from_dict(dict(config.prompt))
        self.tokenizer = catalogue_tokenizer(config, catalog, Path(workdir), template)
        self.prompts = Prompts(self.tokenizer, catalog, template, cf_slots=cf is not None)
        self.titles = TitleTable.from_prompts(self.prompts)
        vocab = len(self.tokenizer)
        self.trie = Trie.from_sequences(self.titles.sequences, vocab)
        self.target_positions = template.max_title_tokens + 1
        if config.checkpoint:
            self.model_config = QwenConfig.from_hf(hf_loading.read_config(config.checkpoint), dtype=config.dtype)
            if self.model_config.vocab_size < vocab:
                raise ValueError(f"{config.checkpoint}: the model's vocabulary ({self.model_config.vocab_size}) is "
                                 f"smaller than the tokenizer's ({vocab})")
        else:
            shape = dict(hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                         num_layers=config.num_layers, num_heads=config.num_heads, num_kv_heads=config.num_kv_heads,
                         head_dim=config.head_dim, rope_theta=config.rope_theta,
                         tie_word_embeddings=config.tie_word_embeddings)
            if config.shape:
                shape.update(qwen.QWEN3_SHAPES[config.shape], rope_theta=1_000_000.0)
            self.model_config = QwenConfig(vocab_size=vocab, dtype=config.dtype, **shape)
        logger.info(f"LLM-as-RS: {len(self.titles.sequences)} unique titles for {len(self.prompts.lines)} items "
                    f"({self.titles.shared} items share a title, {self.prompts.titles_cut} titles cut to "
                    f"{template.max_title_tokens} tokens), vocabulary {vocab}")

    def create(self, rngs: nnx.Rngs) -> Qwen:
        """The model with random weights (a checkpoint's are filled in by `pretrained`, outside jit)."""
        config = self.config
        model = Qwen(self.model_config, rngs=rngs)
        if config.mode == "lora":
            add_lora(model, config.lora_targets, rank=config.lora_rank, alpha=config.lora_alpha, rngs=rngs)
        # Prompt pieces, the title trie and each title's item reach the compiled programs through the model.
        tables = {"prompts": jax.tree.map(jnp.asarray, self.prompts.tables()), "trie": self.trie.device_arrays(),
                  "first_item": jnp.asarray(self.titles.first_item)}
        if self.cf is not None:
            tables["cf"] = jnp.asarray(self.cf)
            model_config = self.model_config
            model.cf_projection = Dense((self.cf.shape[1],), (model_config.hidden_size,), (None, "embed"),
                                        use_bias=False, dtype=jnp.dtype(model_config.dtype),
                                        kernel_init=nnx.initializers.zeros_init(), kind=CFParam, rngs=rngs)
        model.tables = constants(tables)
        return model

    def cf_inputs(self, model: Qwen, items: jax.Array | None) -> jax.Array | None:
        """[B, T, hidden] additive input embeddings: `W . cf[item]` at each CF slot (items > 0), 0 elsewhere; None
        without CF."""
        if self.cf is None:
            return None
        projected = model.cf_projection(constant_values(model.tables)["cf"][items])
        return jnp.where((items > 0)[..., None], projected, 0)

    def pretrained(self) -> nnx.State:
        """The checkpoint's weights at the created model's paths (under LoRA adapters: `<layer>.base.kernel`)."""
        model = qwen.load(self.config.checkpoint, dtype=self.config.dtype, param_dtype="float32")
        if self.config.mode == "lora":
            add_lora(model, self.config.lora_targets, rank=self.config.lora_rank, alpha=self.config.lora_alpha,
                     rngs=nnx.Rngs(0))
        return nnx.state(model, nnx.All(nnx.Param, nnx.Not(LoRAParam)))

    def columns(self, split: LeaveOneOut) -> dict[str, np.ndarray]:
        """Every training prefix (at most `max_history` items) and its next item, as prompt + title rows."""
        histories, targets, _ = split.training_examples(self.config.max_history)
        return self.prompts.training_rows(histories, targets)

    def loss(self, model: Qwen, batch: dict[str, jax.Array], rng: jax.Array
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean cross-entropy of the target title tokens + EOS (the last `target_positions` columns hold them; a
        length bucket may cut rows shorter than that, never into the answer opener that precedes every target)."""
        tokens, mask = batch["tokens"], batch["mask"]
        length = tokens.shape[1]
        span = min(self.target_positions, length - 1)
        hidden = model.hidden_states(tokens, mask, input_embeddings=self.cf_inputs(model, batch.get("items")))
        logits = model.logits(hidden[:, length - 1 - span:length - 1])  # [B, span, vocab] fp32
        labels = tokens[:, length - span:]
        weights = batch["target_mask"][:, length - span:].astype(jnp.float32)
        label_logits = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
        nll = jax.nn.logsumexp(logits, axis=-1) - label_logits
        total = weights.sum()
        return (nll * weights).sum() / jnp.maximum(total, 1.0), {"weight": total}

    def recommend(self, model: Qwen, histories: jax.Array, k: int) -> jax.Array:
        """Top-k item ids [B, k] by title-trie beam search (max(k, beam_width) beams); -1 for dead beams."""
        tables = constant_values(model.tables)
        histories = histories[:, -self.config.max_history:]
        prompt_ids, prompt_mask, prompt_items = build_prompts(tables["prompts"], histories)
        step_fn, state = model.beam_decoder(prompt_ids, prompt_mask, self.trie.max_depth,
                                            input_embeddings=self.cf_inputs(model, prompt_items))
        result = beam_search(step_fn, state, tables["trie"], beam_width=max(k, self.config.beam_width),
                             start_token=self.prompts.start_token, end_token=self.prompts.eos,
                             length_normalization=self.config.length_normalization,
                             resize_state=qwen.resize_beam_state, constrained=self.config.constrained)
        found = result.valid & (result.sequence_index >= 0)
        items = tables["first_item"][jnp.maximum(result.sequence_index, 0)]
        return jnp.where(found, items, INVALID_ITEM)[:, :k].astype(jnp.int32)

    def model_family(self) -> ModelFamily:
        config = self.config
        padded = ("mask", "tokens", "target_mask", *(("items",) if self.cf is not None else ()))
        lora = LoRAParam if self.cf is None else nnx.Any(LoRAParam, CFParam)
        return ModelFamily(name="llm", create=self.create, loss=self.loss, recommend=self.recommend,
                           training_columns=self.columns, padded_columns=padded, history_length=config.max_history,
                           trainable=lora if config.mode == "lora" else nnx.Param,
                           pretrained=self.pretrained if config.checkpoint else None,
                           item_groups=self.titles.item_groups(), item_group_name="title")


def family(config: LLMRSConfig, split: LeaveOneOut, workdir: str | Path,
           item_embeddings: dict[str, np.ndarray] | None = None) -> ModelFamily:
    """`item_embeddings`: the run's earlier models' item tables by name (for `cf_source`)."""
    cf = cf_table(config, split.dataset.num_items, item_embeddings or {})
    return LLMRSFamily(config, split.dataset.catalog, Path(workdir), cf).model_family()


def config_entry(model: dict | None = None, **train_overrides) -> dict:
    """A `config.models` entry: every `LLMRSConfig` field (defaults, then `model`) and the trainer defaults (early
    stopping on validation recall@10) with `train_overrides`."""
    from jaxrec.config import check_fields, dataclass_defaults
    from jaxrec.train.defaults import train_config

    check_fields(LLMRSConfig, model or {}, "LLM-as-RS model")
    fields = dataclass_defaults(LLMRSConfig)
    merged: dict[str, Any] = {**fields, **(model or {})}
    if isinstance((model or {}).get("prompt"), dict):
        merged["prompt"] = {**fields["prompt"], **model["prompt"]}
    train = train_config(early_stopping={"metric": "recall@10", "patience": 5})
    train.update(train_overrides)
    return {"family": "llm", "model": merged, "train": train.to_dict()}
