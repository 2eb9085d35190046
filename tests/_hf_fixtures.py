"""Tiny random Hugging Face checkpoints written by the tests (PyTorch models saved as safetensors), and batches.

Every weight, norm scales and biases included, is perturbed away from HF's initialisation (which leaves norms at 1
and biases at 0), so that a parameter loaded into the wrong place changes the outputs.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers

VOCAB = 96


@pytest.fixture(autouse=True)
def exact_matmuls():
    """fp32 matmuls at full precision (GPUs would otherwise use TF32); a no-op on CPU. Import it to apply it."""
    with jax.default_matmul_precision("highest"):
        yield


def perturb(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():  # tied parameters are one object, perturbed once
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()


def save(model: torch.nn.Module, folder: Path, **options) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True, **options)
    return folder


def bert_model(**overrides) -> transformers.BertModel:
    torch.manual_seed(0)
    config = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=64, layer_norm_eps=1e-12, attn_implementation="eager")
    return perturb(transformers.BertModel(transformers.BertConfig(**{**config, **overrides})))


def t5_config(feed_forward_proj: str = "relu", **overrides) -> transformers.T5Config:
    config = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
                  relative_attention_num_buckets=8, relative_attention_max_distance=20,
                  feed_forward_proj=feed_forward_proj, attn_implementation="eager")
    return transformers.T5Config(**{**config, **overrides})


def t5_encoder(feed_forward_proj: str = "relu", **overrides) -> transformers.T5EncoderModel:
    torch.manual_seed(0)
    return perturb(transformers.T5EncoderModel(t5_config(feed_forward_proj, **overrides)))


def qwen3_config(**overrides) -> transformers.Qwen3Config:
    # head_dim 16 != hidden / heads = 8, and 2 key/value heads for 4 query heads (GQA).
    config = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, rope_theta=5000.0, max_position_embeddings=128,
                  tie_word_embeddings=True, attn_implementation="eager")
    return transformers.Qwen3Config(**{**config, **overrides})


def qwen3_causal_lm(**overrides) -> transformers.Qwen3ForCausalLM:
    torch.manual_seed(0)
    return perturb(transformers.Qwen3ForCausalLM(qwen3_config(**overrides)))


def batch(lengths: list[int], length: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded random ids [B, L] (padding id 0) and the mask (1 = real token)."""
    length = length or max(lengths)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (len(lengths), length))
    mask = (np.arange(length)[None] < np.array(lengths)[:, None]).astype(np.int64)
    return np.where(mask == 1, ids, 0), mask


def mean_pool(hidden: torch.Tensor, mask: np.ndarray, normalize: bool) -> np.ndarray:
    """The sentence-transformers recipe in torch: mean over the mask (count clamped at 1e-9), F.normalize."""
    weights = torch.tensor(mask, dtype=torch.float32)[..., None]
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return (torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled).numpy()


def save_word_tokenizer(folder: Path) -> None:
    """A whitespace word-level tokenizer over VOCAB ids ([PAD] = 0, [UNK] = 1, w2..) saved into `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i for i in range(2, VOCAB)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                                model_max_length=48)
    fast.save_pretrained(folder)


def max_diff(ours, reference, mask: np.ndarray | None = None) -> float:
    """Max |ours - reference|, over the real (mask = 1) positions when a mask is given."""
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(reference, np.float64))
    return float(diff[mask.astype(bool)].max() if mask is not None else diff.max())
